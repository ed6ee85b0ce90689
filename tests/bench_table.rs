//! One table for every benchmark (issue 8): each bench, when `scripts/bench` runs it, records
//! its headline rows (a figure next to its reference from the same run, the ratio, the goal
//! and whether it is met) as JSON in `$CARDGATE_BENCH_TABLE_DIR/<bench>.json`; the `table`
//! bench prints them all as one Markdown table, which is what `docs/performance.md` holds.
//!
//! Benches run on their own (`cargo bench --bench daemon`) print their detailed tables as
//! before and record nothing unless the variable is set.

use std::path::{Path, PathBuf};

/// The variable naming the directory rows are recorded in.
pub const TABLE_DIR_VAR: &str = "CARDGATE_BENCH_TABLE_DIR";

/// One row: what was measured, its figure, the reference it is compared with and that
/// reference's figure (both from the same run), their ratio, the goal, and the verdict.
#[derive(Debug, Clone, Default)]
pub struct BenchRow {
    /// What was measured, with its unit.
    pub measure: String,
    /// Our figure.
    pub figure: String,
    /// What it is compared against.
    pub reference: String,
    /// The reference's figure, same unit, same run.
    pub reference_figure: String,
    /// Ours ÷ reference (`None` where a ratio means nothing, as for a count against zero).
    pub ratio: Option<f64>,
    /// The goal from the issues, `""` when the row is reported only.
    pub goal: String,
    /// `met`, `not met`, or `""`.
    pub verdict: String,
}

impl BenchRow {
    /// A row comparing `figure` with `reference_figure` (same unit), ratio computed.
    pub fn compare(
        measure: impl Into<String>,
        figure: f64,
        reference: impl Into<String>,
        reference_figure: f64,
        precision: usize,
    ) -> BenchRow {
        BenchRow {
            measure: measure.into(),
            figure: format!("{figure:.precision$}"),
            reference: reference.into(),
            reference_figure: format!("{reference_figure:.precision$}"),
            ratio: (reference_figure > 0.0).then(|| figure / reference_figure),
            ..BenchRow::default()
        }
    }

    /// The same row with a goal and whether it was met.
    pub fn goal(mut self, goal: impl Into<String>, met: bool) -> BenchRow {
        self.goal = goal.into();
        self.verdict = if met { "met" } else { "not met" }.to_owned();
        self
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "measure": self.measure,
            "figure": self.figure,
            "reference": self.reference,
            "reference_figure": self.reference_figure,
            "ratio": self.ratio,
            "goal": self.goal,
            "verdict": self.verdict,
        })
    }

    fn from_json(value: &serde_json::Value) -> BenchRow {
        let text = |key: &str| value[key].as_str().unwrap_or_default().to_owned();
        BenchRow {
            measure: text("measure"),
            figure: text("figure"),
            reference: text("reference"),
            reference_figure: text("reference_figure"),
            ratio: value["ratio"].as_f64(),
            goal: text("goal"),
            verdict: text("verdict"),
        }
    }
}

/// Records `rows` for `bench` if [`TABLE_DIR_VAR`] is set; returns the file written.
pub fn record(bench: &str, rows: &[BenchRow]) -> std::io::Result<Option<PathBuf>> {
    let Some(dir) = std::env::var_os(TABLE_DIR_VAR) else {
        return Ok(None);
    };
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{bench}.json"));
    let json = serde_json::json!({
        "bench": bench,
        "rows": rows.iter().map(BenchRow::to_json).collect::<Vec<_>>(),
    });
    std::fs::write(&path, format!("{json:#}\n"))?;
    Ok(Some(path))
}

/// The benches in the order the table shows them, with a heading each.
pub const ORDER: [(&str, &str); 4] = [
    ("apdu_roundtrip", "APDU round trip"),
    ("identity_read", "Insertion to identity read (issue 3)"),
    ("login", "Passcode and login (issue 4)"),
    ("daemon", "The daemon over D-Bus (issues 5 and 8)"),
];

/// Reads every recorded bench in `dir` and renders one Markdown table; a bench that recorded
/// nothing is named as missing, so a failed bench cannot go unnoticed.
pub fn render(dir: &Path) -> Result<String, String> {
    let mut out = String::from(
        "| measure | ours | reference | reference figure | ratio | goal | verdict |\n\
         | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    let mut missing = Vec::new();
    for (bench, heading) in ORDER {
        let path = dir.join(format!("{bench}.json"));
        let Ok(text) = std::fs::read_to_string(&path) else {
            missing.push(bench);
            continue;
        };
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        out.push_str(&format!("| **{heading}** | | | | | | |\n"));
        for row in json["rows"].as_array().into_iter().flatten() {
            let row = BenchRow::from_json(row);
            let ratio = row.ratio.map(|r| format!("{r:.2}x")).unwrap_or_default();
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} |\n",
                row.measure,
                row.figure,
                row.reference,
                row.reference_figure,
                ratio,
                row.goal,
                row.verdict
            ));
        }
    }
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(format!(
            "{out}\nno rows recorded by: {} (run scripts/bench; see its output for why)",
            missing.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_through_the_files_and_a_missing_bench_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let row = BenchRow::compare("Authorise median (µs)", 240.0, "Peer.Ping", 160.0, 1)
            .goal("< 1.5x", true);
        let write = |bench: &str| {
            let json = serde_json::json!({"bench": bench, "rows": [row.to_json()]});
            std::fs::write(dir.path().join(format!("{bench}.json")), json.to_string()).unwrap();
        };
        for (bench, _) in &ORDER[..3] {
            write(bench);
        }
        let err = render(dir.path()).unwrap_err();
        assert!(
            err.ends_with(
                "no rows recorded by: daemon (run scripts/bench; see its output for why)"
            ),
            "{err}"
        );
        write("daemon");
        let table = render(dir.path()).unwrap();
        assert!(
            table.contains(
                "| Authorise median (µs) | 240.0 | Peer.Ping | 160.0 | 1.50x | < 1.5x | met |"
            ),
            "{table}"
        );
        assert_eq!(table.matches("| **").count(), 4);
    }
}
