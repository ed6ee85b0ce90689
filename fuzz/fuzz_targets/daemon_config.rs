//! Fuzz target: the daemon's configuration loader (`cardgated::Config::from_toml`) on
//! arbitrary text, the same function `cardgated --check-config` and start-up call. Whatever
//! it accepts must be a configuration the daemon can use: the idle limit is computed without
//! panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = cardgated::Config::from_toml(text) {
        let _ = config.max_idle();
        let _ = format!("{config:?}");
    }
});
