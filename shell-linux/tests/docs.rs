//! The README and the docs against the code: the claims a test can check (issue 14). A claim that
//! drifts fails here, naming the file to fix.

use std::path::{Path, PathBuf};

use chouette_agent::limits;
use chouette_agent::store::Queue;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `12345` as the docs write it: `12,345`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[test]
fn every_script_is_in_the_readme_layout() {
    let readme = read("README.md");
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(root().join("scripts")).expect("scripts/").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".sh") && !readme.contains(&format!("`{name}`")) {
            missing.push(name);
        }
    }
    assert!(missing.is_empty(), "README.md's layout table does not name {missing:?}");
}

#[test]
fn every_dead_letter_queue_is_in_the_dead_letter_doc() {
    let doc = read("docs/dead-letters.md");
    for queue in Queue::ALL.into_iter().filter(|q| q.is_dead()) {
        assert!(
            doc.contains(&format!("`{}`", queue.prefix())),
            "docs/dead-letters.md lacks {}",
            queue.prefix()
        );
    }
}

#[test]
fn the_readme_quotes_the_raw_page_and_step_bounds() {
    let readme = read("README.md");
    let page = format!(
        "pages of {} records, at most {} per step",
        thousands(limits::RAW_PAGE),
        thousands(limits::MAX_RAW_PER_STEP)
    );
    assert!(readme.contains(&page), "README.md should say {page:?} (limits.rs)");
}

#[test]
fn every_module_with_children_is_a_folder_with_mod_rs() {
    // The layout the README's contributing section describes: `x/mod.rs`, never `x.rs` beside `x/`.
    fn walk(dir: &Path, found: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.with_extension("rs").is_file() {
                    found.push(path.display().to_string());
                }
                walk(&path, found);
            }
        }
    }
    let mut found = Vec::new();
    for krate in ["core", "shell-linux", "shell-client", "shell-mcu", "boards", "tests", "firmware", "probe"]
    {
        walk(&root().join(krate).join("src"), &mut found);
    }
    assert!(
        found.is_empty(),
        "modules written as `x.rs` beside a folder `x/` (make them `x/mod.rs`): {found:?}"
    );
}
