//! The Compose file of docs/containers.md, read as far as the harness
//! needs: its service, its image, and the settings that decide whether the
//! engine starts it (`cap_add`, `ulimits: memlock`).
//!
//! No YAML crate: the file is a few lines of one known shape, and one small
//! function below reads the keys the harness uses, failing on a file it
//! cannot read rather than guessing.

use anyhow::{bail, Context as _};

use super::table::{read_table_page, TABLE_PAGE};
use crate::util::Result;

/// What the harness reads from the Compose file.
#[derive(Debug, PartialEq)]
pub(super) struct Compose {
    /// The file as the page has it.
    text: String,
    /// The first service's name.
    pub(super) service: String,
    /// `cap_add: [A, B]`.
    cap_add: Vec<String>,
    /// `memlock: {soft: S, hard: H}` under `ulimits:`, or `memlock: N`.
    memlock: Option<(String, String)>,
}

/// The Compose file of docs/containers.md: the first ```yaml block with
/// `services:`.
pub(super) fn from_page() -> Result<Compose> {
    let text = read_table_page()?;
    let mut rest = text.as_str();
    while let Some(at) = rest.find("```yaml\n") {
        let block = &rest[at + 8..];
        let end = block.find("```").unwrap_or(block.len());
        if block[..end].contains("services:") {
            return parse(&block[..end]);
        }
        rest = &block[end..];
    }
    bail!("{TABLE_PAGE} has no ```yaml block with a Compose `services:` file")
}

/// Reads the keys the harness uses from a Compose file.
fn parse(yaml: &str) -> Result<Compose> {
    let mut service = None;
    let mut cap_add = Vec::new();
    let mut memlock = None;
    let mut in_services = false;
    for line in yaml.lines() {
        let (key, value) = match line.trim().split_once(':') {
            Some((k, v)) => (k.trim(), v.trim()),
            None => continue,
        };
        let indented = line.starts_with(' ');
        match key {
            "services" if !indented => in_services = true,
            name if in_services && indented && value.is_empty() && service.is_none() => {
                service = Some(name.to_string());
            }
            "cap_add" => {
                cap_add = value
                    .trim_matches(['[', ']'])
                    .split(',')
                    .map(|c| c.trim().to_string())
                    .filter(|c| !c.is_empty())
                    .collect();
            }
            "memlock" => {
                let field = |name: &str| {
                    value
                        .split(name)
                        .nth(1)
                        .and_then(|rest| rest.split([',', '}']).next())
                        .map(|v| v.trim().to_string())
                };
                memlock = match (field("soft:"), field("hard:")) {
                    (Some(soft), Some(hard)) => Some((soft, hard)),
                    _ if !value.is_empty() => Some((value.to_string(), value.to_string())),
                    _ => bail!(
                        "{TABLE_PAGE}: cannot read the Compose line `{}`",
                        line.trim()
                    ),
                };
            }
            _ => {}
        }
    }
    Ok(Compose {
        text: yaml.to_string(),
        service: service.context("the Compose file of docs/containers.md has no service")?,
        cap_add,
        memlock,
    })
}

impl Compose {
    /// The `docker run` flags it amounts to.
    pub(super) fn flags(&self) -> Vec<String> {
        let caps = self.cap_add.iter().map(|c| format!("--cap-add={c}"));
        let memlock = self
            .memlock
            .iter()
            .map(|(soft, hard)| format!("--ulimit=memlock={soft}:{hard}"));
        caps.chain(memlock).collect()
    }

    /// The file with the image of its service replaced by `image`.
    pub(super) fn with_image(&self, image: &str) -> Result<String> {
        let line = self
            .text
            .lines()
            .find(|l| l.trim_start().starts_with("image:"))
            .context("the Compose file of docs/containers.md names no image")?;
        let indent = &line[..line.len() - line.trim_start().len()];
        Ok(self.text.replace(line, &format!("{indent}image: {image}")))
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn the_compose_file_gives_its_service_flags_and_image() {
        let yaml = "services:\n  daemon:\n    image: my-image\n    cap_add: [IPC_LOCK]\n    \
                    ulimits:\n      memlock: {soft: -1, hard: -1}\n";
        let compose = parse(yaml).unwrap();
        assert_eq!(compose.service, "daemon");
        assert_eq!(
            compose.flags(),
            ["--cap-add=IPC_LOCK", "--ulimit=memlock=-1:-1"]
        );
        assert!(compose
            .with_image("x/doctor")
            .unwrap()
            .contains("\n    image: x/doctor\n"));
        let plain = parse("services:\n  d:\n    image: i\n").unwrap();
        assert!(plain.flags().is_empty());
    }
}
