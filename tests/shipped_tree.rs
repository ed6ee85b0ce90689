//! The shipped binaries link no test equipment. `cargo tree -e normal` of the four packages the
//! Debian packages are built from (`cardgated`, `cardgate-cli`, `cardgate-pam`,
//! `cardgate-desktop`, resolved together as `packaging/build-deb`'s `cargo build -p ... -p ...`
//! resolves them) must
//! hold none of the virtual card, the simulator, the lab, the demo or the e2e suites, nor the
//! crates only they bring in (RustCrypto's RSA with `hazmat`, the virtual card's P-256, the
//! simulator's HTTP router, the test harnesses), and `cardgate-reader` must be built without
//! its `virtual` feature. A failure names the crate, the binary whose tree holds it and the
//! path by which it arrives (`cargo tree -i`).
//!
//! Needs no lab, no root and no network: `cargo tree --locked` reads the lock file and the
//! manifests already downloaded for the build.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The packages whose build outputs are shipped (packaging/build-deb).
const SHIPPED: [&str; 4] = [
    "cardgated",
    "cardgate-cli",
    "cardgate-pam",
    "cardgate-desktop",
];

/// Crates that are test equipment, or that only test equipment brings in, and why.
const TEST_EQUIPMENT: &[(&str, &str)] = &[
    ("cardgate-vcard", "the virtual PIV card and its test CA"),
    ("cardgate-spine-sim", "the Spine-like endpoint simulator"),
    ("cardgate-lab", "the PC/SC lab"),
    ("cardgate-demo", "the demo and the e2e fixtures"),
    ("cardgate-e2e", "the end-to-end suites"),
    (
        "cardgate-icc",
        "the card trait, needed only by the virtual reader backend",
    ),
    ("rsa", "RustCrypto RSA (with hazmat), the virtual card's"),
    ("p256", "RustCrypto P-256, the virtual card's"),
    ("ecdsa", "RustCrypto ECDSA, the virtual card's"),
    ("axum", "the simulator's HTTP router"),
    ("libtest-mimic", "the e2e suites' test harness"),
    ("proptest", "property tests"),
];

/// A package's feature that only tests and the demo enable.
const TEST_FEATURES: &[(&str, &str, &str)] = &[
    (
        "cardgate-reader",
        "virtual",
        "the in-process virtual reader backend",
    ),
    ("cardgate-config", "demo", "the embedded demo configuration"),
];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(workspace_root());
    command
}

/// `cargo tree` with `args`, its standard output; panics with cargo's own words if it fails.
fn tree(args: &[&str]) -> String {
    let output = cargo()
        .args(["tree", "--locked", "-e", "normal", "--prefix", "none"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo tree: {e}"));
    assert!(
        output.status.success(),
        "cargo tree {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// One line of the shipped trees: the root it is under, the crate, its enabled features.
struct Node {
    root: String,
    name: String,
    features: Vec<String>,
}

/// Every crate in the shipped packages' trees, resolved together.
fn shipped_nodes() -> Vec<Node> {
    let mut args = vec!["-f", "{p}|{f}"];
    for package in SHIPPED {
        args.extend(["-p", package]);
    }
    let text = tree(&args);
    let mut nodes = Vec::new();
    let mut root: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            // Trees of several roots are separated by an empty line.
            root = None;
            continue;
        }
        let (package, features) = line.split_once('|').unwrap_or((line, ""));
        let name = package.split_whitespace().next().unwrap_or("").to_owned();
        let root = root.get_or_insert_with(|| name.clone()).clone();
        let features = features
            .trim_end_matches("(*)")
            .split(',')
            .map(|f| f.trim().to_owned())
            .filter(|f| !f.is_empty())
            .collect();
        nodes.push(Node {
            root,
            name,
            features,
        });
    }
    nodes
}

/// How `name` gets into `root`'s tree (`cargo tree -i`), for the failure message.
fn path_to(root: &str, name: &str) -> String {
    tree(&["-p", root, "-i", name])
}

#[test]
fn the_shipped_trees_are_the_three_packages() {
    let nodes = shipped_nodes();
    for package in SHIPPED {
        assert!(
            nodes.iter().any(|n| n.root == package && n.name == package),
            "cargo tree printed no tree for {package}; the parsing here is out of date"
        );
    }
}

#[test]
fn no_test_equipment_is_linked_into_the_shipped_binaries() {
    let mut found = Vec::new();
    for node in shipped_nodes() {
        if let Some((_, why)) = TEST_EQUIPMENT.iter().find(|(name, _)| *name == node.name) {
            let entry = (node.root.clone(), node.name.clone(), *why);
            if !found.contains(&entry) {
                found.push(entry);
            }
        }
    }
    let report: Vec<String> = found
        .iter()
        .map(|(root, name, why)| {
            format!(
                "{root} links {name} ({why}), by way of:\n{}",
                path_to(root, name)
            )
        })
        .collect();
    assert!(
        report.is_empty(),
        "test equipment in the shipped binaries (make it a dev-dependency, or move the code \
         that needs it into crates/demo):\n\n{}",
        report.join("\n")
    );
}

#[test]
fn no_test_only_feature_is_enabled_in_the_shipped_binaries() {
    let mut found = Vec::new();
    for node in shipped_nodes() {
        for (name, feature, why) in TEST_FEATURES {
            let entry = format!(
                "{} builds {name} with its `{feature}` feature ({why})",
                node.root
            );
            if node.name == *name
                && node.features.iter().any(|f| f == feature)
                && !found.contains(&entry)
            {
                found.push(entry);
            }
        }
    }
    assert!(
        found.is_empty(),
        "a test-only feature in the shipped binaries (enable it only in dev-dependencies and \
         in crates/demo):\n{}",
        found.join("\n")
    );
}
