//! What a step of `cargo xtask test` is, running the steps in order, and
//! the summary at the end.

use std::time::Instant;

use crate::util::{self, Tally};

/// What a step does; it adds what it counted to the tally it is given.
type Action = Box<dyn FnOnce(&mut Tally) -> util::Result>;

/// One step of the matrix: a name, what it is about, and what it does.
pub(super) struct Step {
    name: &'static str,
    /// The target triple, or a short label (`host`, `all`) for steps that
    /// are not about one target.
    target: String,
    action: Action,
}

impl Step {
    pub(super) fn new(
        name: &'static str,
        target: &str,
        action: impl FnOnce(&mut Tally) -> util::Result + 'static,
    ) -> Step {
        Step {
            name,
            target: target.to_string(),
            action: Box::new(action),
        }
    }
}

/// One row of the summary.
struct Row {
    step: &'static str,
    target: String,
    tally: Tally,
    seconds: f64,
}

/// Runs the steps in order, ending at the first failure; prints the
/// summary either way.
pub(super) fn run_steps(steps: Vec<Step>) -> util::Result {
    let mut rows: Vec<Row> = Vec::new();
    let mut failure = None;
    let total = steps.len();
    for (i, step) in steps.into_iter().enumerate() {
        eprintln!("\nxtask: [{}/{total}] {} {}", i + 1, step.name, step.target);
        let start = Instant::now();
        let mut tally = Tally::default();
        let result = (step.action)(&mut tally);
        if result.is_err() && tally.failed == 0 {
            // The step failed without a failing test to show for it (a lint,
            // a build, a crashed test binary): count the step itself.
            tally.failed = 1;
        }
        rows.push(Row {
            step: step.name,
            target: step.target,
            tally,
            seconds: start.elapsed().as_secs_f64(),
        });
        if let Err(e) = result {
            failure = Some(e);
            break;
        }
    }
    print!("{}", summary(&rows));
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The summary: a table of the steps (step, target, passed, failed,
/// ignored, filtered out, seconds) with a total row, then
/// `xtask: N passed, M failed, I ignored, F filtered out`, which CI reads.
fn summary(rows: &[Row]) -> String {
    let mut sum = Tally::default();
    let mut seconds = 0.0;
    let mut table: Vec<[String; 7]> = Vec::new();
    let cells = |step: &str, target: &str, t: &Tally, s: f64| {
        [
            step.to_string(),
            target.to_string(),
            t.passed.to_string(),
            t.failed.to_string(),
            t.ignored.to_string(),
            t.filtered.to_string(),
            format!("{s:.1}"),
        ]
    };
    for row in rows {
        table.push(cells(row.step, &row.target, &row.tally, row.seconds));
        sum.add(&row.tally);
        seconds += row.seconds;
    }
    table.push(cells("total", "", &sum, seconds));
    let header = [
        "step", "target", "passed", "failed", "ignored", "filtered", "seconds",
    ];
    format!(
        "\n{}xtask: {} passed, {} failed, {} ignored, {} filtered out\n",
        util::text_table(&header, &table),
        sum.passed,
        sum.failed,
        sum.ignored,
        sum.filtered
    )
}

#[cfg(test)]
mod tests {
    use super::{summary, Row};
    use crate::util::Tally;

    #[test]
    fn the_summary_ends_in_the_totals_ci_reads() {
        let row = |step, passed, ignored| Row {
            step,
            target: "x".into(),
            tally: Tally {
                passed,
                ignored,
                ..Tally::default()
            },
            seconds: 1.0,
        };
        let text = summary(&[row("fmt", 0, 0), row("test", 5, 1)]);
        assert!(text.contains("\ntotal "), "{text}");
        assert!(
            text.ends_with("xtask: 5 passed, 0 failed, 1 ignored, 0 filtered out\n"),
            "{text}"
        );
    }
}
