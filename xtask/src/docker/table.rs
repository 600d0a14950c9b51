//! The container table of docs/containers.md: one cell per row, with the
//! `docker run` flags and the outcomes the row claims.

use std::fs;

use anyhow::{bail, ensure, Context as _};

use crate::util;

/// The page that holds the container table and the Compose file.
pub(super) const TABLE_PAGE: &str = "docs/containers.md";

pub(super) fn read_table_page() -> util::Result<String> {
    let path = util::root().join(TABLE_PAGE);
    fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))
}

/// One row of the container table.
#[derive(Debug, Clone)]
pub(super) struct Cell {
    pub(super) name: String,
    /// `docker run` flags (empty for none; unused for `compose`).
    pub(super) flags: Vec<String>,
    /// The outcomes the table names for it, in order.
    pub(super) claims: Vec<&'static str>,
}

const OUTCOMES: [&str; 4] = ["locked", "ENOMEM", "EPERM", "refused-by-host"];

/// Reads the container table (the README links it: docs/containers.md):
/// the table whose header starts
/// `| cell |`; each row `| \`name\` | \`flags\` or none | outcome text |`.
pub(super) fn readme_cells() -> util::Result<Vec<Cell>> {
    parse_table(&read_table_page()?)
}

fn parse_table(text: &str) -> util::Result<Vec<Cell>> {
    let mut lines = text.lines().skip_while(|l| !l.starts_with("| cell |"));
    if lines.next().is_none() {
        bail!("{TABLE_PAGE} has no container table (a table whose header starts `| cell |`)");
    }
    let mut cells = Vec::new();
    for line in lines.skip(1) {
        if !line.starts_with('|') {
            break;
        }
        let columns: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
        let [name, flags, outcome] = columns[..] else {
            bail!("{TABLE_PAGE}: a table row needs 3 columns: {line}");
        };
        let name = name.trim_matches('`').to_string();
        // The flags are the first code span of the column; prose (`none`,
        // `the Compose file below`) means none.
        let flags = match flags.strip_prefix('`').and_then(|f| f.split('`').next()) {
            Some(code) => code.split_whitespace().map(str::to_string).collect(),
            None => Vec::new(),
        };
        // The claims are the outcome words in code spans: `locked`, ...
        let mut claims: Vec<(usize, &'static str)> = OUTCOMES
            .iter()
            .filter_map(|o| outcome.find(&format!("`{o}`")).map(|at| (at, *o)))
            .collect();
        claims.sort();
        ensure!(
            !claims.is_empty(),
            "{TABLE_PAGE}: no outcome in table row {line}"
        );
        cells.push(Cell {
            name,
            flags,
            claims: claims.into_iter().map(|(_, o)| o).collect(),
        });
    }
    Ok(cells)
}

#[cfg(test)]
mod tests {
    use super::parse_table;

    #[test]
    fn the_table_parses_into_cells_with_their_claims() {
        let text = "intro\n\n| cell | `docker run` flags | outcome |\n|---|---|---|\n\
| `default` | none | `locked` (not `EPERM`) |\n\
| `unlimited` | `--ulimit memlock=-1:-1` (unlimited) | `locked`; `refused-by-host` where root lacks it |\n\nafter\n";
        let cells = parse_table(text).unwrap();
        assert_eq!(cells.len(), 2);
        assert_eq!(cells[0].name, "default");
        assert!(cells[0].flags.is_empty());
        assert_eq!(cells[0].claims, ["locked", "EPERM"]);
        assert_eq!(cells[1].flags, ["--ulimit", "memlock=-1:-1"]);
        assert_eq!(cells[1].claims, ["locked", "refused-by-host"]);
    }
}
