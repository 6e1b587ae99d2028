//! Finding earlier runs of a step (`quiver run --reuse`): a run's step key is the tag
//! [`STEP_KEY_TAG`], which the catalog indexes by value.

use super::Store;
use crate::catalog::STEP_KEY_TAG;
use crate::error::Result;
use crate::types::{LifecycleStage, RunInfo};

impl Store {
    /// The active runs tagged with step key `key`, newest first: a probe of the step-key index,
    /// whatever the number of runs in the store.
    pub fn runs_with_step_key(&self, key: &str) -> Result<Vec<RunInfo>> {
        let cat = &self.inner.catalog;
        let mut runs = Vec::new();
        for run_id in cat.runs_with_step_key(key)? {
            // A tag value holding NUL could reach past its key in the index: check the tag.
            if cat.tag(&run_id, STEP_KEY_TAG)?.as_deref() != Some(key) {
                continue;
            }
            if let Some(info) = cat.run_info(&run_id)? {
                if info.lifecycle_stage == LifecycleStage::Active {
                    runs.push(info);
                }
            }
        }
        runs.sort_by_key(|r| std::cmp::Reverse(r.start_time));
        Ok(runs)
    }
}
