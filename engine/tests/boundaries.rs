//! The module borders the design fixes: storage, the SQL session and the config never reach
//! into the auth tree (passwords, tokens, keys, the account store). Their only shared types
//! are the plain values of `identity`.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    if dir.is_file() {
        out.push(dir.to_path_buf());
        return;
    }
    for e in std::fs::read_dir(dir).unwrap() {
        sources(&e.unwrap().path(), out);
    }
}

#[test]
fn storage_session_and_config_never_import_auth() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    for part in ["storage", "session.rs", "config"] {
        sources(&src.join(part), &mut files);
    }
    assert!(files.len() >= 5, "{files:?}");
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for (i, line) in text.lines().enumerate() {
            assert!(
                !line.contains("crate::auth") && !line.contains("super::auth"),
                "{}:{}: `{line}` reaches into the auth tree",
                f.display(),
                i + 1
            );
        }
    }
}
