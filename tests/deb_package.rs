//! End-to-end: the Debian packages. `packaging/build-deb` stages the binaries of the test's own
//! build profile (`cargo build --locked -p cardgated -p cardgate-cli -p cardgate-pam -p
//! cardgate-desktop`, run by `scripts/test` before the tests; a real package packs the release
//! build) and the packaging files into two .debs, the agent and the desktop program, which are
//! then installed on this machine with the real `dpkg -i` (as root), checked, and purged again.
//!
//! Checked after installing: every file is where the unit, the bus and libpam look for it;
//! the `cardgate` group and account exist; the PAM profile is shipped but not enabled; the
//! bus policy and the activation file load in a real `dbus-daemon` (system type) that lists
//! `org.cardgate.Agent` as activatable; `systemd-analyze verify` accepts the unit; the desktop
//! program's autostart and application entries pass `desktop-file-validate`; the manual
//! pages render with `man`; `dpkg --verify` finds every file as its md5sums say. After
//! purging: the files, the configuration and the state directory are gone.
//!
//! Before installing, Debian's `lintian` (run as an unprivileged user, as it asks) must print
//! nothing at all about either package: no error, no warning, and no override without its
//! reason beside it (packaging/cardgate.lintian-overrides).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use cardgate_e2e::check;
use libtest_mimic::{Arguments, Failed, Trial};

fn main() -> ExitCode {
    let args = Arguments::from_args();
    let trials = vec![Trial::test(
        "deb_builds_installs_validates_and_purges",
        deb_package,
    )];
    libtest_mimic::run(&args, trials).exit_code()
}

/// Runs a command; its stdout on success, a failure with everything it said otherwise.
fn run(program: &str, args: &[&str]) -> Result<String, Failed> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| Failed::from(format!("{program}: {e}")))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Failed::from(format!(
            "{program} {} failed ({}):\n{text}",
            args.join(" "),
            out.status
        )))
    }
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// The files the desktop package must install.
fn shipped_desktop() -> Vec<PathBuf> {
    [
        "/usr/bin/cardgate-desktop",
        "/etc/xdg/autostart/cardgate-desktop.desktop",
        "/usr/share/applications/cardgate-desktop.desktop",
        "/usr/share/doc/cardgate-desktop/copyright",
        "/usr/share/doc/cardgate-desktop/changelog.gz",
        "/usr/share/man/man1/cardgate-desktop.1.gz",
    ]
    .into_iter()
    .map(PathBuf::from)
    .collect()
}

/// The files the package must install (paths on the installed system).
fn shipped(multiarch: &str) -> Vec<PathBuf> {
    [
        "/usr/sbin/cardgated".to_owned(),
        "/usr/bin/cardgate".to_owned(),
        format!("/usr/lib/{multiarch}/security/pam_cardgate.so"),
        "/lib/systemd/system/cardgated.service".to_owned(),
        "/usr/share/dbus-1/system-services/org.cardgate.Agent.service".to_owned(),
        "/usr/share/dbus-1/system.d/org.cardgate.Agent.conf".to_owned(),
        "/usr/share/dbus-1/interfaces/org.cardgate.Agent1.xml".to_owned(),
        "/usr/share/dbus-1/interfaces/org.cardgate.Workstation1.xml".to_owned(),
        "/usr/share/dbus-1/interfaces/org.cardgate.Login1.xml".to_owned(),
        "/usr/share/dbus-1/interfaces/org.cardgate.Prompt1.xml".to_owned(),
        "/usr/lib/sysusers.d/cardgated.conf".to_owned(),
        "/usr/share/polkit-1/rules.d/50-cardgate.rules".to_owned(),
        "/usr/share/pam-configs/cardgate".to_owned(),
        "/etc/cardgate/cardgated.toml".to_owned(),
        "/etc/cardgate/pam-users".to_owned(),
        "/usr/share/doc/cardgate/copyright".to_owned(),
        "/usr/share/doc/cardgate/changelog.gz".to_owned(),
        "/usr/share/man/man1/cardgate.1.gz".to_owned(),
        "/usr/share/man/man8/cardgated.8.gz".to_owned(),
        "/usr/share/lintian/overrides/cardgate".to_owned(),
    ]
    .into_iter()
    .map(PathBuf::from)
    .collect()
}

fn deb_package() -> Result<(), Failed> {
    let started = Instant::now();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("no workspace root")?
        .to_path_buf();
    // The binaries of this build's own profile (target/debug under `cargo test`, built by
    // scripts/test): the test is about what the package holds and does, not optimisation.
    let release = std::env::current_exe()
        .map_err(|e| Failed::from(e.to_string()))?
        .ancestors()
        .nth(2)
        .ok_or("no target directory")?
        .to_path_buf();
    let out = tempfile::tempdir().map_err(|e| Failed::from(e.to_string()))?;
    let script = root.join("packaging/build-deb");
    let deb = run(
        script.to_str().ok_or("path")?,
        &[
            out.path().to_str().ok_or("path")?,
            release.to_str().ok_or("path")?,
        ],
    )?;
    let mut debs = deb.lines().rev().take(2);
    let desktop_deb = debs.next().ok_or("build-deb printed nothing")?.to_owned();
    let deb = debs
        .next()
        .ok_or("build-deb printed one line, not two")?
        .to_owned();
    check(desktop_deb.contains("cardgate-desktop_"), || {
        format!("the last line is not the desktop package: {desktop_deb}")
    })?;
    // The desktop program is a package of its own, and the only one that needs GTK.
    let desktop_info = run("dpkg-deb", &["--info", &desktop_deb])?;
    check(
        desktop_info.contains("Package: cardgate-desktop")
            && desktop_info.contains("libgtk-4-1 (>= 4.8)")
            && desktop_info.contains("libadwaita-1-0 (>= 1.2)")
            && desktop_info.contains("cardgate (="),
        || format!("desktop control: {desktop_info}"),
    )?;
    let info = run("dpkg-deb", &["--info", &deb])?;
    check(
        info.contains("Package: cardgate")
            && info.contains("pcscd")
            && !info.contains("gtk")
            && !info.contains("adwaita"),
        || format!("control: {info}"),
    )?;
    // Only the production binaries: no demo, no virtual card, no simulator (their code is not
    // linked into the shipped ones either: tests/shipped_tree.rs).
    let contents = run("dpkg-deb", &["--contents", &deb])?;
    for equipment in ["cardgated-demo", "vcard", "spine-sim", "cardgate-lab"] {
        check(!contents.contains(equipment), || {
            format!("the package holds {equipment}:\n{contents}")
        })?;
    }
    lintian(out.path(), &[&deb, &desktop_deb])?;
    let multiarch = run("dpkg-architecture", &["-qDEB_HOST_MULTIARCH"])?
        .trim()
        .to_owned();

    // A leftover from an interrupted run would make dpkg -i an upgrade; start clean.
    if installed("cardgate") || installed("cardgate-desktop") {
        run("dpkg", &["--purge", "cardgate-desktop", "cardgate"])?;
    }
    run("dpkg", &["-i", &deb, &desktop_deb])?;
    let result = installed_checks(&multiarch);
    // Purge whatever the checks said, then report.
    let purged = run("dpkg", &["--purge", "cardgate-desktop", "cardgate"]);
    result?;
    purged?;
    check(
        !installed("cardgate") && !installed("cardgate-desktop"),
        || "still installed after purge".into(),
    )?;
    for path in shipped(&multiarch).into_iter().chain(shipped_desktop()) {
        check(!path.exists(), || {
            format!("{} is still there after purge", path.display())
        })?;
    }
    check(!Path::new("/etc/cardgate").exists(), || {
        "/etc/cardgate is still there after purge".into()
    })?;
    check(!Path::new("/var/lib/cardgate").exists(), || {
        "/var/lib/cardgate is still there after purge".into()
    })?;
    eprintln!("deb_package: {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// `lintian` over the built packages, as the unprivileged `nobody` (as root it warns about
/// being root, and a package checker has no business running as root): any line it prints,
/// on either stream, is a failure. Overridden tags are silent only with the override file the
/// package ships, whose every override carries its reason.
fn lintian(dir: &Path, debs: &[&str]) -> Result<(), Failed> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| Failed::from(format!("making {} readable: {e}", dir.display())))?;
    let out = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .args(["env", "HOME=/nonexistent", "lintian"])
        .args(debs)
        .output()
        .map_err(|e| {
            Failed::from(format!(
                "lintian: {e} (scripts/setup installs lintian; run it first)"
            ))
        })?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    check(out.status.success() && said.trim().is_empty(), || {
        format!("lintian ({}) on {}:\n{said}", out.status, debs.join(" "))
    })
}

fn installed_checks(multiarch: &str) -> Result<(), Failed> {
    check(installed("cardgate"), || "dpkg says not installed".into())?;
    for path in shipped(multiarch) {
        check(path.exists(), || {
            format!("{} was not installed", path.display())
        })?;
    }
    // The installed contract is the one the daemon serves (tests/ipc_contract.rs).
    for (path, xml) in [
        (
            "/usr/share/dbus-1/interfaces/org.cardgate.Agent1.xml",
            cardgate_ipc::AGENT1_XML,
        ),
        (
            "/usr/share/dbus-1/interfaces/org.cardgate.Workstation1.xml",
            cardgate_ipc::WORKSTATION1_XML,
        ),
        (
            "/usr/share/dbus-1/interfaces/org.cardgate.Login1.xml",
            cardgate_ipc::LOGIN1_XML,
        ),
        (
            "/usr/share/dbus-1/interfaces/org.cardgate.Prompt1.xml",
            cardgate_ipc::PROMPT1_XML,
        ),
    ] {
        let installed = std::fs::read_to_string(path)
            .map_err(|e| Failed::from(format!("reading {path}: {e}")))?;
        check(installed == xml, || {
            format!("{path} differs from crates/ipc/interfaces")
        })?;
    }
    run("getent", &["group", "cardgate"])?;
    let account = run("getent", &["passwd", "cardgate"])?;
    check(account.contains("/var/lib/cardgate"), || {
        format!("the cardgate account: {account}")
    })?;
    check(Path::new("/var/lib/cardgate").is_dir(), || {
        "no /var/lib/cardgate".into()
    })?;
    // The PAM profile is shipped, not enabled.
    let profile = std::fs::read_to_string("/usr/share/pam-configs/cardgate")
        .map_err(|e| Failed::from(e.to_string()))?;
    check(profile.contains("Default: no"), || profile.clone())?;
    for stack in ["common-auth", "common-account", "common-session"] {
        let text = std::fs::read_to_string(Path::new("/etc/pam.d").join(stack)).unwrap_or_default();
        check(!text.contains("pam_cardgate"), || {
            format!("/etc/pam.d/{stack} was changed by installing: {text}")
        })?;
    }
    // The desktop program: autostarted for every graphical login, by an entry the desktop's
    // own validator accepts.
    for path in shipped_desktop() {
        check(path.exists(), || {
            format!("{} was not installed", path.display())
        })?;
    }
    for entry in [
        "/etc/xdg/autostart/cardgate-desktop.desktop",
        "/usr/share/applications/cardgate-desktop.desktop",
    ] {
        run("desktop-file-validate", &[entry])?;
        let text = std::fs::read_to_string(entry).unwrap_or_default();
        check(text.contains("Exec=/usr/bin/cardgate-desktop"), || {
            format!("{entry} does not start the program:\n{text}")
        })?;
    }
    // The autostart entry starts it quietly; the application entry shows the status window.
    let autostart =
        std::fs::read_to_string("/etc/xdg/autostart/cardgate-desktop.desktop").unwrap_or_default();
    check(
        autostart.contains("NoDisplay=true") && !autostart.contains("--status"),
        || format!("the autostart entry: {autostart}"),
    )?;
    let application = std::fs::read_to_string("/usr/share/applications/cardgate-desktop.desktop")
        .unwrap_or_default();
    check(application.contains("--status"), || {
        format!("the application entry: {application}")
    })?;
    let help = run("/usr/bin/cardgate-desktop", &["--help"])?;
    check(help.contains("--no-open-on-insert"), || help.clone())?;

    // The installed binaries run.
    let version = run("/usr/sbin/cardgated", &["--version"])?;
    check(version.contains("cardgated"), || version.clone())?;
    run("/usr/bin/cardgate", &["--help"])?;
    let help = run("/usr/sbin/cardgated", &["--help"])?;
    check(!help.contains("--demo"), || {
        format!("the shipped cardgated offers a demo:\n{help}")
    })?;

    // The manual pages, as `man` shows them: each names its program and its options.
    for (page, program, option) in [
        ("/usr/share/man/man1/cardgate.1.gz", "cardgate", "--json"),
        (
            "/usr/share/man/man8/cardgated.8.gz",
            "cardgated",
            "--check-config",
        ),
        (
            "/usr/share/man/man1/cardgate-desktop.1.gz",
            "cardgate-desktop",
            "--no-open-on-insert",
        ),
    ] {
        let out = Command::new("man")
            .args(["-l", page])
            .env("MANWIDTH", "100")
            .env("MAN_KEEP_FORMATTING", "")
            .output()
            .map_err(|e| Failed::from(format!("man -l {page}: {e}")))?;
        let text = String::from_utf8_lossy(&out.stdout);
        // man justifies lines; words, not spaces, are what the page says.
        let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
        check(
            out.status.success()
                && words.contains(&format!("NAME {program} - "))
                && words.contains(option),
            || {
                format!(
                    "man -l {page} ({}):\n{text}{}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                )
            },
        )?;
    }
    // Every shipped file as the package's md5sums say (debsums' and dpkg's own check).
    run("dpkg", &["--verify", "cardgate", "cardgate-desktop"])?;

    // The bus policy and the activation file in a real dbus-daemon of the system type.
    let dir = tempfile::tempdir().map_err(|e| Failed::from(e.to_string()))?;
    let socket = dir.path().join("bus");
    let config = dir.path().join("system.conf");
    std::fs::write(
        &config,
        format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <servicedir>/usr/share/dbus-1/system-services</servicedir>
  <policy context="default">
    <allow user="*"/>
    <allow send_destination="org.freedesktop.DBus"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
  </policy>
  <include>/usr/share/dbus-1/system.d/org.cardgate.Agent.conf</include>
</busconfig>
"#,
            socket.display()
        ),
    )
    .map_err(|e| Failed::from(e.to_string()))?;
    let started = run(
        "dbus-daemon",
        &[
            &format!("--config-file={}", config.display()),
            "--fork",
            "--print-pid=1",
            "--nopidfile",
        ],
    )?;
    let pid = started.trim().to_owned();
    let names = run(
        "dbus-send",
        &[
            &format!("--bus=unix:path={}", socket.display()),
            "--print-reply",
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.ListActivatableNames",
        ],
    );
    let _ = Command::new("kill").arg(&pid).status();
    let names = names?;
    check(names.contains("\"org.cardgate.Agent\""), || {
        format!("org.cardgate.Agent is not activatable: {names}")
    })?;

    // The unit, as systemd reads it.
    run(
        "systemd-analyze",
        &["verify", "/lib/systemd/system/cardgated.service"],
    )?;
    // Its sandbox: no core dumps (issue 15), and systemd's exposure score no worse than the
    // 1.6 it had when the hardening was first measured.
    let unit = std::fs::read_to_string("/lib/systemd/system/cardgated.service")
        .map_err(|e| Failed::from(format!("reading the installed unit: {e}")))?;
    check(unit.lines().any(|l| l.trim() == "LimitCORE=0"), || {
        format!("the unit does not set LimitCORE=0:\n{unit}")
    })?;
    let security = run(
        "systemd-analyze",
        &[
            "security",
            "--offline=yes",
            "/lib/systemd/system/cardgated.service",
        ],
    )?;
    let exposure = security
        .lines()
        .find_map(|l| l.split("exposure level for cardgated.service:").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|score| score.parse::<f64>().ok())
        .ok_or_else(|| Failed::from(format!("no exposure score in:\n{security}")))?;
    check(exposure <= 1.6, || {
        format!("the unit's exposure rose to {exposure} (at most 1.6):\n{security}")
    })?;
    Ok(())
}
