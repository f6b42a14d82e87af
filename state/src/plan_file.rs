//! The saved-plan envelope (`berth plan --out`): its format, atomic write, read and staleness
//! check against the state; the plan inside is the engine's and stays opaque here.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Result, StateError};
use crate::ids::now_unix;
use crate::private_fs::write_atomic;
use crate::record::Meta;

/// The plan-file layout this berth reads and writes; a newer one is refused.
pub const PLAN_FORMAT_VERSION: u32 = 1;

/// A saved plan and the state and config it was made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanFile {
    /// Layout version of this file.
    pub format_version: u32,
    /// Lineage of the state the plan was made from.
    pub lineage: String,
    /// Serial of that state when the plan was made.
    pub serial: u64,
    /// Hash of the config the plan was made from; compared by the engine.
    pub config_hash: String,
    /// When the plan was made, in Unix seconds.
    pub created_at: u64,
    /// The berth version that made it.
    pub berth_version: String,
    /// The plan itself, as the engine serialised it.
    pub plan: serde_json::Value,
    /// The non-sensitive variables that were set (not left to their default) when the plan was
    /// made, as the text `--var` takes: `apply` uses them again.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// The sensitive variables that were set, each with an HMAC of its value keyed per state;
    /// their values are never stored, so `apply` asks for them again and checks them.
    #[serde(default)]
    pub sensitive: BTreeMap<String, String>,
}

impl PlanFile {
    /// A plan file for `plan`, made now from the state described by `meta`.
    pub fn new(
        meta: &Meta,
        config_hash: impl Into<String>,
        berth_version: impl Into<String>,
        plan: serde_json::Value,
    ) -> PlanFile {
        PlanFile {
            format_version: PLAN_FORMAT_VERSION,
            lineage: meta.lineage.clone(),
            serial: meta.serial,
            config_hash: config_hash.into(),
            created_at: now_unix(),
            berth_version: berth_version.into(),
            plan,
            variables: BTreeMap::new(),
            sensitive: BTreeMap::new(),
        }
    }

    /// Writes the file as JSON, mode 0600, through a temp file and a rename so that no partial
    /// plan is ever left at `path`.
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut json = serde_json::to_vec_pretty(self).map_err(|e| StateError::Encode {
            what: "plan file".to_owned(),
            detail: e.to_string(),
        })?;
        json.push(b'\n');
        write_atomic(path, &json)
    }

    /// Reads a plan file, refusing files that are not berth plans or come from a newer berth.
    pub fn read(path: &Path) -> Result<PlanFile> {
        let bytes = std::fs::read(path).map_err(|e| StateError::io("read", path, e))?;
        let not_a_plan = |detail: String| StateError::NotAPlan {
            path: path.to_path_buf(),
            detail,
        };
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| not_a_plan(format!("not JSON ({e})")))?;
        let Some(object) = value.as_object() else {
            return Err(not_a_plan("not a JSON object".to_owned()));
        };
        // Checked before the rest so that a newer layout is reported as newer, not as malformed.
        if let Some(found) = object.get("format_version").and_then(|v| v.as_u64())
            && found > u64::from(PLAN_FORMAT_VERSION)
        {
            return Err(StateError::NewerPlanFormat {
                path: path.to_path_buf(),
                found: u32::try_from(found).unwrap_or(u32::MAX),
                supported: PLAN_FORMAT_VERSION,
            });
        }
        serde_json::from_value(value).map_err(|e| not_a_plan(e.to_string()))
    }

    /// Refuses the plan unless it was made from this state (same lineage) as it is now (same
    /// serial).
    pub fn check_current(&self, meta: &Meta) -> Result<()> {
        if self.lineage != meta.lineage {
            return Err(StateError::PlanForOtherState {
                plan_lineage: self.lineage.clone(),
                state_lineage: meta.lineage.clone(),
            });
        }
        if self.serial != meta.serial {
            return Err(StateError::StalePlan {
                plan_serial: self.serial,
                state_serial: meta.serial,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn meta(lineage: &str, serial: u64) -> Meta {
        Meta {
            lineage: lineage.to_owned(),
            serial,
            format_version: 1,
            hmac_key: "00".repeat(32),
        }
    }

    fn plan_file() -> PlanFile {
        PlanFile::new(
            &meta("aaaa", 4),
            "sha256:cfg",
            "0.1.0",
            serde_json::json!({"actions": [{"address": "model.a@gpu-a", "action": "create"}]}),
        )
    }

    #[test]
    fn a_written_plan_reads_back_identical_and_is_owner_only() {
        // SAFETY: umask only narrows permissions of files created later; 022 is the common
        // default, under which a plain write would leave the plan world-readable.
        unsafe { libc::umask(0o022) };
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("tonight.plan");
        let plan = plan_file();
        plan.write(&path).unwrap();
        assert_eq!(PlanFile::read(&path).unwrap(), plan);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(plan.format_version, PLAN_FORMAT_VERSION);
        assert_eq!((plan.lineage.as_str(), plan.serial), ("aaaa", 4));
    }

    #[test]
    fn a_failed_write_leaves_no_partial_file_behind() {
        let tmp = tempfile::tempdir().unwrap();
        // A non-empty directory where the plan should go: the final rename fails.
        let path = tmp.path().join("p.plan");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("keep"), b"x").unwrap();

        let err = plan_file().write(&path).unwrap_err();
        assert!(err.to_string().contains("p.plan"), "{err}");
        let names: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("p.plan")]);
    }

    #[test]
    fn files_that_are_not_plans_are_refused_with_the_reason() {
        let tmp = tempfile::tempdir().unwrap();
        let cases: [(&str, &[u8], &str); 4] = [
            ("config.hcl", b"host \"a\" {}\n", "not JSON"),
            ("list.json", b"[1, 2]", "not a JSON object"),
            ("plan-output.json", br#"{"actions": []}"#, "missing field"),
            ("binary", &[0xff, 0xfe, 0x00], "not JSON"),
        ];
        for (name, content, reason) in cases {
            let path = tmp.path().join(name);
            fs::write(&path, content).unwrap();
            let err = PlanFile::read(&path).unwrap_err();
            assert!(
                matches!(err, StateError::NotAPlan { .. }),
                "{name}: {err:?}"
            );
            let msg = err.to_string();
            assert!(msg.contains("is not a berth plan file"), "{msg}");
            assert!(msg.contains(reason), "{msg}");
        }
    }

    #[test]
    fn a_plan_from_a_newer_berth_is_refused_as_newer() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("new.plan");
        fs::write(&path, br#"{"format_version": 3, "envelope": "changed"}"#).unwrap();
        let err = PlanFile::read(&path).unwrap_err();
        assert!(
            matches!(
                err,
                StateError::NewerPlanFormat {
                    found: 3,
                    supported: 1,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn a_missing_plan_file_names_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("nope.plan");
        let err = PlanFile::read(&path).unwrap_err();
        assert!(err.to_string().contains("nope.plan"), "{err}");
    }

    #[test]
    fn a_plan_is_current_only_for_its_own_state_at_its_serial() {
        let plan = plan_file();
        plan.check_current(&meta("aaaa", 4)).unwrap();

        let err = plan.check_current(&meta("bbbb", 4)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "this plan was made for another state (lineage aaaa, current bbbb)"
        );

        let err = plan.check_current(&meta("aaaa", 6)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the state changed since this plan was made (serial 4, now 6): run berth plan again"
        );
    }
}
