//! PIV card application client (in progress).
