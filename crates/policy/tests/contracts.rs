//! The contracts this crate defines, held to the places that repeat them in words.
//!
//! The action list, the default activity of each action, the Spine activities and the refusal
//! reasons are defined once, in this crate (`src/action.rs`, `src/ids.rs`, `src/decide.rs`).
//! Code takes them from here (the IPC crate, the CLI and the daemon have no list of their
//! own), but documentation pages and the shipped example configuration are text. Each test
//! here reads one of those files and fails naming the file and what to write in it, so that a
//! newcomer who adds an action to `src/action.rs` is told every place that must follow.

use std::fs;
use std::path::PathBuf;

use cardgate_policy::{Action, Activity, Reason};

/// A file of the repository, relative to its root, with its text.
struct RepoFile {
    path: &'static str,
    text: String,
}

fn repo_file(path: &'static str) -> RepoFile {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path);
    let text = fs::read_to_string(&full)
        .unwrap_or_else(|e| panic!("cannot read {path} ({}): {e}", full.display()));
    RepoFile { path, text }
}

/// One action as the text must show it: its bus name and its default activity.
struct ActionEntry {
    name: String,
    activity: String,
}

fn policy_actions() -> Vec<ActionEntry> {
    Action::ALL
        .into_iter()
        .map(|a| ActionEntry {
            name: a.name().to_owned(),
            activity: a.default_activity().as_str().to_owned(),
        })
        .collect()
}

/// Every `word` not written as `` `word` `` in a prose file, each as a sentence naming the
/// file and what to do.
fn unmentioned(file: &RepoFile, what: &str, words: &[String]) -> Vec<String> {
    words
        .iter()
        .filter(|w| !file.text.contains(&format!("`{w}`")))
        .map(|w| {
            format!(
                "{} does not mention the {what} `{w}`: add it where the {what}s are listed",
                file.path
            )
        })
        .collect()
}

/// The actions' default-activity lines of an example configuration (`# name = "activity"`
/// in its commented `[policy.actions]` block) compared with the table: each missing,
/// wrong or unknown line as a sentence.
fn config_drift(file: &RepoFile, actions: &[ActionEntry]) -> Vec<String> {
    let block: Vec<&str> = file
        .text
        .lines()
        .skip_while(|l| l.trim() != "# [policy.actions]")
        .skip(1)
        .take_while(|l| l.starts_with("# ") && l.contains(" = \""))
        .collect();
    let mut problems = Vec::new();
    if block.is_empty() {
        problems.push(format!(
            "{} has no commented `# [policy.actions]` block listing each action's default activity",
            file.path
        ));
        return problems;
    }
    for action in actions {
        let line = format!("# {} = \"{}\"", action.name, action.activity);
        if !block.contains(&line.as_str()) {
            problems.push(format!(
                "{} does not list the action {} with its default activity: add `{line}` \
                 to its [policy.actions] block",
                file.path, action.name
            ));
        }
    }
    for line in &block {
        let name = line
            .trim_start_matches("# ")
            .split(" = ")
            .next()
            .unwrap_or("");
        if !actions.iter().any(|a| a.name == name) {
            problems.push(format!(
                "{} lists `{name}`, which is not an action of the policy crate: remove it",
                file.path
            ));
        }
    }
    problems
}

/// The rows of the module documentation's action table (`` | `name` | `activity` | ``)
/// compared with the action table.
fn doc_table_drift(file: &RepoFile, actions: &[ActionEntry]) -> Vec<String> {
    let rows: Vec<&str> = file
        .text
        .lines()
        .filter(|l| l.starts_with("//! | `"))
        .collect();
    let mut problems = Vec::new();
    for action in actions {
        let row = format!("//! | `{}` | `{}` |", action.name, action.activity);
        if !rows.contains(&row.as_str()) {
            problems.push(format!(
                "{} has no row for the action {} in its action table: add `{}`",
                file.path,
                action.name,
                row.trim_start_matches("//! ")
            ));
        }
    }
    if rows.len() != actions.len() {
        problems.push(format!(
            "{} has {} rows in its action table for {} actions: one row per action",
            file.path,
            rows.len(),
            actions.len()
        ));
    }
    problems
}

/// Everything that repeats the action list, checked against `actions`.
fn action_drift(actions: &[ActionEntry]) -> Vec<String> {
    let names: Vec<String> = actions.iter().map(|a| a.name.clone()).collect();
    let mut problems = Vec::new();
    for path in ["docs/ipc.md", "docs/support.md"] {
        problems.extend(unmentioned(&repo_file(path), "action", &names));
    }
    problems.extend(doc_table_drift(
        &repo_file("crates/policy/src/lib.rs"),
        actions,
    ));
    for path in [
        "config/cardgated.toml",
        "fuzz/seeds/daemon_config/documented.toml",
    ] {
        problems.extend(config_drift(&repo_file(path), actions));
    }
    problems
}

fn assert_none(problems: Vec<String>) {
    assert!(
        problems.is_empty(),
        "the text has drifted from the policy crate:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn every_place_that_lists_the_actions_lists_exactly_the_policy_crates_actions() {
    assert_none(action_drift(&policy_actions()));
}

#[test]
fn a_newly_added_action_is_reported_with_every_file_to_update() {
    // What a newcomer sees after adding an action to src/action.rs and nothing else: the
    // same checks, with one more action in the table than the files know.
    let mut actions = policy_actions();
    actions.push(ActionEntry {
        name: "prescription-cancel".into(),
        activity: "eps.cancel".into(),
    });
    let problems = action_drift(&actions);
    for file in [
        "docs/ipc.md",
        "docs/support.md",
        "crates/policy/src/lib.rs",
        "config/cardgated.toml",
        "fuzz/seeds/daemon_config/documented.toml",
    ] {
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with(file) && p.contains("prescription-cancel")),
            "nothing tells the newcomer to update {file}: {problems:#?}"
        );
    }
    // And nothing else is reported: the checks name only what is really missing.
    assert!(
        problems
            .iter()
            .all(|p| p.contains("prescription-cancel") || p.contains("rows in its action table")),
        "{problems:#?}"
    );
}

#[test]
fn a_removed_action_still_in_the_example_configuration_is_reported() {
    let mut actions = policy_actions();
    let removed = actions.remove(0);
    let problems = config_drift(&repo_file("config/cardgated.toml"), &actions);
    assert!(
        problems
            .iter()
            .any(|p| p.contains(&format!("`{}`", removed.name)) && p.contains("remove it")),
        "{problems:#?}"
    );
}

#[test]
fn the_spine_protocol_documents_every_activity() {
    let names: Vec<String> = Activity::KNOWN
        .iter()
        .map(|a| a.as_str().to_owned())
        .collect();
    assert_none(unmentioned(
        &repo_file("docs/spine-protocol.md"),
        "activity",
        &names,
    ));
}

#[test]
fn the_ipc_documentation_lists_every_refusal_reason() {
    let codes: Vec<String> = Reason::ALL.iter().map(|r| r.code().to_owned()).collect();
    assert_none(unmentioned(&repo_file("docs/ipc.md"), "reason", &codes));
}
