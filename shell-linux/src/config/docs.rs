//! Text generated from the table of variables ([`super::vars::VARS`]): the variables part of
//! `chouette --help`, the tables of `docs/configuration.md` (between `<!-- vars:begin SECTION -->`
//! and `<!-- vars:end SECTION -->`) and the whole of `deploy/chouette.env`.
//!
//! The tests below regenerate both files and fail with the first difference when the committed
//! ones are stale; `CHOUETTE_BLESS=1 cargo test -p chouette-agent --lib config::` rewrites them.

use super::vars::{DefaultValue, Kind, Section, Var, VARS};

/// Widest line of `--help` and `chouette.env`.
pub const WIDTH: usize = 100;

/// Appends `text` word-wrapped to [`WIDTH`]: the first line after `first` (already written,
/// `first_len` columns wide), the others after `indent`.
fn wrap_into(out: &mut String, text: &str, first_len: usize, indent: &str) {
    let mut column = first_len;
    let mut line_empty = true;
    for word in text.split_whitespace() {
        if !line_empty && column + 1 + word.len() > WIDTH {
            out.push('\n');
            out.push_str(indent);
            column = indent.len();
            line_empty = true;
        }
        if !line_empty {
            out.push(' ');
            column += 1;
        }
        out.push_str(word);
        column += word.chars().count();
        line_empty = false;
    }
    out.push('\n');
}

fn default_text(var: &Var) -> &'static str {
    match var.default {
        DefaultValue::Value(text) => text,
        DefaultValue::Unset => "unset",
        DefaultValue::Described(text) => text,
    }
}

/// The help sentence followed by the type, when the type says more than "text" or "path".
fn help_with_kind(var: &Var) -> String {
    match var.kind {
        Kind::Text | Kind::Path => var.help.to_owned(),
        kind => format!("{} ({})", var.help, kind.describe()),
    }
}

fn section_vars(section: Section) -> impl Iterator<Item = &'static Var> {
    VARS.iter().filter(move |v| v.section == section)
}

/// The `ENVIRONMENT` part of `chouette --help`: every variable by section, with its default and
/// help, then the section's note.
pub fn help_variables() -> String {
    const NAME: usize = 28;
    const DEFAULT: usize = 12;
    let indent = " ".repeat(4 + NAME + DEFAULT);
    let mut out = String::from(
        "ENVIRONMENT (names are case-insensitive; an empty value counts as unset; lists are JSON;\n\
         booleans are true/false/1/0/yes/no/on/off/t/f/y/n in any case):\n",
    );
    for section in Section::ALL {
        out.push_str(&format!("\n  {}\n", section.title()));
        for var in section_vars(section) {
            let default = default_text(var);
            let head = format!("    {:<NAME$}", var.name);
            if default.len() < DEFAULT {
                let head = format!("{head}{default:<DEFAULT$}");
                out.push_str(&head);
                wrap_into(&mut out, &help_with_kind(var), head.len(), &indent);
            } else {
                out.push_str(&format!("{head}{default}\n{indent}"));
                wrap_into(&mut out, &help_with_kind(var), indent.len(), &indent);
            }
        }
        if !section.note().is_empty() {
            out.push_str("    ");
            wrap_into(&mut out, section.note(), 4, "    ");
        }
    }
    out
}

/// A Markdown table cell: `|`, `<` and `>` escaped (`<name>` would be read as HTML).
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('<', "&lt;").replace('>', "&gt;")
}

/// The sentence, capitalized, with a final period.
fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    let first = chars.next().map(|c| c.to_uppercase().collect::<String>()).unwrap_or_default();
    format!("{first}{}.", chars.as_str())
}

/// The Markdown table of one section, for `docs/configuration.md`.
pub fn markdown_table(section: Section) -> String {
    let mut out = String::from("| Variable | Default | Type | Meaning |\n|---|---|---|---|\n");
    for var in section_vars(section) {
        let default = match var.default {
            DefaultValue::Value(text) => format!("`{text}`"),
            DefaultValue::Unset => "unset".to_owned(),
            DefaultValue::Described(text) => text.to_owned(),
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            var.name,
            cell(&default),
            cell(&var.kind.describe()),
            cell(&sentence(var.help))
        ));
    }
    out
}

/// The begin and end markers of a section's table in `docs/configuration.md`.
pub fn markers(section: Section) -> (String, String) {
    (format!("<!-- vars:begin {} -->", section.key()), format!("<!-- vars:end {} -->", section.key()))
}

/// `doc` with every section's table (between its markers) regenerated. A missing marker is an
/// error naming it.
pub fn regenerate_markdown(doc: &str) -> Result<String, String> {
    let mut out = doc.to_owned();
    for section in Section::ALL {
        let (begin, end) = markers(section);
        let start = out.find(&begin).ok_or_else(|| format!("marker {begin} is missing"))? + begin.len();
        let stop = start + out[start..].find(&end).ok_or_else(|| format!("marker {end} is missing"))?;
        let table = format!("\n{}", markdown_table(section));
        out.replace_range(start..stop, &table);
    }
    Ok(out)
}

/// The head of `deploy/chouette.env`, before the variables.
const ENV_HEAD: &str = "\
# /etc/chouette/chouette.env: the Chouette agent's configuration, read by chouette.service
# (EnvironmentFile=). Every variable is shown commented out with its default; uncomment and
# edit what you need, then `systemctl restart chouette`. docs/configuration.md has the full
# rules: names are case-insensitive, an empty value counts as unset, lists and dicts are JSON
# (quote them with single quotes here), intervals are whole seconds >= 1.
# This file holds the API key and other secrets: keep it mode 0600, owned by root (systemd reads
# it as root).
# Generated from shell-linux/src/config/vars.rs: edit the table there, then run
# CHOUETTE_BLESS=1 cargo test -p chouette-agent --lib config::
";

/// The whole of `deploy/chouette.env`: every variable commented out with its default and help.
pub fn env_file() -> String {
    let mut out = String::from(ENV_HEAD);
    for section in Section::ALL {
        out.push('\n');
        let title = format!("## {}.", section.title());
        out.push_str(&title);
        if section.note().is_empty() {
            out.push('\n');
        } else {
            out.push(' ');
            wrap_into(&mut out, section.note(), title.len() + 1, "## ");
        }
        for var in section_vars(section) {
            out.push_str("## ");
            let mut help = help_with_kind(var);
            if let DefaultValue::Described(text) = var.default {
                help.push_str(&format!("; default: {text}"));
            }
            wrap_into(&mut out, &help, 3, "## ");
            let value = match var.default {
                DefaultValue::Value(text) if text.starts_with(['[', '{']) => format!("'{text}'"),
                DefaultValue::Value(text) => text.to_owned(),
                DefaultValue::Unset | DefaultValue::Described(_) => String::new(),
            };
            out.push_str(&format!("#{}={value}\n", var.name));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/configuration.md");
    const ENV: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/chouette.env");

    /// Fails with the first differing line unless `CHOUETTE_BLESS=1`, which rewrites `path`.
    fn check_generated(path: &str, committed: &str, generated: &str) {
        if committed == generated {
            return;
        }
        if std::env::var("CHOUETTE_BLESS").is_ok_and(|v| v == "1") {
            std::fs::write(path, generated).expect("write the regenerated file");
            return;
        }
        // A line-by-line diff (no alignment): enough to see what changed in a table.
        let (old, new): (Vec<&str>, Vec<&str>) = (committed.lines().collect(), generated.lines().collect());
        let mut diff = String::new();
        let differing = (0..old.len().max(new.len())).filter(|&i| old.get(i) != new.get(i));
        for i in differing.take(12) {
            let (a, b) = (old.get(i).unwrap_or(&"(none)"), new.get(i).unwrap_or(&"(none)"));
            diff.push_str(&format!("line {}:\n  committed: {a}\n  generated: {b}\n", i + 1));
        }
        panic!(
            "{path} is stale ({} lines committed, {} generated); first differences:\n{diff}Regenerate \
             it from the table (shell-linux/src/config/vars.rs) with\n  CHOUETTE_BLESS=1 cargo test \
             -p chouette-agent --lib config::",
            old.len(),
            new.len()
        );
    }

    #[test]
    fn docs_configuration_md_tables_are_the_tables() {
        let committed = std::fs::read_to_string(DOC).expect("read docs/configuration.md");
        let generated = regenerate_markdown(&committed).unwrap_or_else(|e| panic!("{DOC}: {e}"));
        check_generated(DOC, &committed, &generated);
    }

    #[test]
    fn deploy_chouette_env_is_the_table() {
        let committed = std::fs::read_to_string(ENV).expect("read deploy/chouette.env");
        check_generated(ENV, &committed, &env_file());
    }

    struct NoRedis;

    impl super::super::HostProbe for NoRedis {
        fn resolves(&self, _: &str, _: u16) -> bool {
            false
        }
        fn dir_writable(&self, _: &std::path::Path) -> bool {
            true
        }
        fn hostname(&self) -> Option<String> {
            None
        }
    }

    #[test]
    fn the_env_file_uncommented_parses_to_the_defaults() {
        use super::super::Config;
        // Every `#NAME=value` line with a value, uncommented (quotes removed, as systemd does).
        let vars: Vec<(String, String)> = env_file()
            .lines()
            .filter_map(|l| l.strip_prefix('#').filter(|l| !l.starts_with('#')))
            .filter_map(|l| l.split_once('='))
            .filter(|(n, v)| {
                !v.is_empty() && n.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            })
            .map(|(n, v)| (n.to_owned(), v.trim_matches('\'').to_owned()))
            .collect();
        assert_eq!(vars.len(), VARS.iter().filter(|v| matches!(v.default, DefaultValue::Value(_))).count());
        let with = Config::from_vars_with(vars, &NoRedis).expect("the defaults parse");
        let without = Config::from_vars_with(Vec::new(), &NoRedis).expect("no variable parses");
        // Setting DATADOG_URL turns Datadog on, REDIS_HOST chooses Redis and plugin variables are
        // carried as set: compare what a default decides.
        let decided = |c: &Config| {
            format!(
                "{:?}",
                (
                    (&c.global_tags, &c.datadog_url, &c.datadog_logs_url, c.logs_api, &c.collector_plugins),
                    (c.aggregate_interval, c.capture_interval, c.release_interval, c.metric_ttl, c.log_ttl),
                    (c.metrics_bulk_size, &c.wrap, c.send_self_metrics, c.log_level),
                    (c.connect_timeout, c.request_timeout, c.grace),
                )
            )
        };
        assert_eq!(decided(&with), decided(&without));
    }

    #[test]
    fn help_lists_every_variable_within_the_width() {
        let help = help_variables();
        for var in VARS {
            let head = format!("    {} ", var.name);
            assert_eq!(help.lines().filter(|l| l.starts_with(&head)).count(), 1, "{}", var.name);
        }
        for line in help.lines() {
            assert!(line.chars().count() <= WIDTH, "{line}");
        }
        for line in env_file().lines() {
            assert!(line.chars().count() <= WIDTH, "{line}");
        }
    }
}
