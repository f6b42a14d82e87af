//! The published JSON Schemas of the `--json` documents (docs/schemas/) match the structs the
//! commands serialise. Regenerate them with
//! `BERTH_WRITE_SCHEMAS=1 cargo test -p berth-engine --test schemas`.

use std::path::{Path, PathBuf};

fn schemas_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/schemas")
}

#[test]
fn published_schemas_match_the_documents() {
    let write = std::env::var_os("BERTH_WRITE_SCHEMAS").is_some();
    let mut stale = Vec::new();
    for (name, schema) in berth::output::schemas() {
        let path = schemas_dir().join(format!("{name}.schema.json"));
        let generated = serde_json::to_string_pretty(&schema).expect("schema serialises") + "\n";
        if write {
            std::fs::create_dir_all(schemas_dir()).expect("docs/schemas");
            std::fs::write(&path, &generated).expect("write schema");
            continue;
        }
        if std::fs::read_to_string(&path).ok().as_deref() != Some(generated.as_str()) {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "these schemas differ from the document structs: {}\nregenerate them with \
         `BERTH_WRITE_SCHEMAS=1 cargo test -p berth-engine --test schemas` and commit the result",
        stale.join(", ")
    );
}
