//! Joins the results files of a run's shards (`run --shard K/N`, one per CI job) into the one file the unsharded run would have written, refusing files that are not shards of one configuration.

use std::path::PathBuf;

use crate::results::{Overhead, Results};

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("{0} is not the results of a shard (it was written by a run without --shard K/N)")]
    NotAShard(PathBuf),
    #[error("{path} is shard {shard} of {count}, but {first} is one of {first_count}: they split different runs")]
    OtherCount { path: PathBuf, shard: u32, count: u32, first: PathBuf, first_count: u32 },
    #[error("{path} and {other} are both shard {shard}")]
    Twice { path: PathBuf, other: PathBuf, shard: String },
    #[error("shard {missing} of {count} is missing: give the results file of every shard")]
    Missing { missing: u32, count: u32 },
    #[error("{path} comes from another configuration than {first}: its {what} differ ({detail})")]
    OtherConfiguration { path: PathBuf, first: PathBuf, what: &'static str, detail: String },
    #[error("{path} holds a build of cell {cell}, which is not in its shard {shard}")]
    StrayCell { path: PathBuf, cell: usize, shard: String },
}

/// The shards' results as one run's: their records in the plan's order, every shard's engines and overhead; complete
/// only when every shard is. `files` must be every shard of one run configuration (options, layerbench version and
/// commit, module store), each once.
pub fn merge(files: Vec<(PathBuf, Results)>) -> Result<Results, MergeError> {
    let mut shards = Vec::new();
    for (path, results) in &files {
        let shard = results.shard.ok_or_else(|| MergeError::NotAShard(path.clone()))?;
        shards.push(shard);
    }
    let Some(((first_path, first), first_shard)) = files.first().zip(shards.first().copied()) else {
        return Err(MergeError::Missing { missing: 1, count: 1 });
    };
    for ((path, results), shard) in files.iter().zip(&shards).skip(1) {
        if shard.count != first_shard.count {
            return Err(MergeError::OtherCount { path: path.clone(), shard: shard.index, count: shard.count, first: first_path.clone(), first_count: first_shard.count });
        }
        let differs = |what: &'static str, a: String, b: String| MergeError::OtherConfiguration {
            path: path.clone(),
            first: first_path.clone(),
            what,
            detail: format!("{a} against {b}"),
        };
        if results.options != first.options {
            return Err(differs("run options", describe_options(results), describe_options(first)));
        }
        if (&results.harness_version, &results.git_commit) != (&first.harness_version, &first.git_commit) {
            let version = |r: &Results| format!("layerbench {} at {}", r.harness_version, r.git_commit.as_deref().unwrap_or("an unknown commit"));
            return Err(differs("layerbench versions", version(results), version(first)));
        }
        if results.store.recipe_fingerprint != first.store.recipe_fingerprint {
            return Err(differs("module stores", results.store.recipe_fingerprint.clone(), first.store.recipe_fingerprint.clone()));
        }
    }
    for (i, shard) in shards.iter().enumerate() {
        if let Some(j) = shards[..i].iter().position(|s| s == shard) {
            return Err(MergeError::Twice { path: files[i].0.clone(), other: files[j].0.clone(), shard: shard.to_string() });
        }
    }
    if let Some(missing) = (1..=first_shard.count).find(|k| !shards.iter().any(|s| s.index == *k)) {
        return Err(MergeError::Missing { missing, count: first_shard.count });
    }
    for ((path, results), shard) in files.iter().zip(&shards) {
        if let Some(cell) = results.records.iter().filter_map(|r| r.cell).find(|c| !shard.holds(*c)) {
            return Err(MergeError::StrayCell { path: path.clone(), cell, shard: shard.to_string() });
        }
    }

    let mut merged = first.clone();
    merged.run_id = files.iter().map(|(_, r)| r.run_id.as_str()).collect::<Vec<_>>().join("+");
    merged.started_unix_ms = files.iter().map(|(_, r)| r.started_unix_ms).min().unwrap_or(first.started_unix_ms);
    merged.complete = files.iter().all(|(_, r)| r.complete);
    merged.shard = None;
    merged.engines.clear();
    merged.records.clear();
    let mut overhead: Option<Overhead> = None;
    for (_, results) in &files {
        for engine in &results.engines {
            if !merged.engines.contains(engine) {
                merged.engines.push(engine.clone());
            }
        }
        if let Some(o) = &results.overhead {
            overhead.get_or_insert_with(Overhead::default).add(o);
        }
        merged.records.extend(results.records.iter().cloned());
    }
    merged.overhead = overhead;
    // Each shard's records are in plan order already; the cell index interleaves them as the unsharded run has them.
    merged.records.sort_by_key(|r| r.cell.unwrap_or(usize::MAX));
    Ok(merged)
}

fn describe_options(r: &Results) -> String {
    let o = &r.options;
    format!(
        "templates {}, scenarios {}, {} repetitions, builders {}, suite {}",
        o.variants.join(" "),
        o.scenarios.join(" "),
        o.repetitions,
        o.builders.iter().map(|b| b.name()).collect::<Vec<_>>().join(" "),
        o.suite.as_deref().unwrap_or("none")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{record_with, results_with, Shard};

    fn shard(index: u32, count: u32, cells: &[usize]) -> (PathBuf, Results) {
        let records = cells
            .iter()
            .flat_map(|&c| {
                ["baseline", "edit"].map(|step| {
                    let mut r = record_with(&format!("v{c}"), "s", step, 1.0, &[], 0);
                    r.cell = Some(c);
                    r
                })
            })
            .collect();
        let mut results = results_with(records);
        results.run_id = format!("run{index}");
        results.shard = Some(Shard { index, count });
        (PathBuf::from(format!("shard{index}.json")), results)
    }

    #[test]
    fn shards_join_in_plan_order_and_every_shard_is_needed_once() {
        let merged = merge(vec![shard(2, 2, &[1, 3]), shard(1, 2, &[0, 2, 4])]).unwrap();
        let order: Vec<(usize, &str)> = merged.records.iter().map(|r| (r.cell.unwrap(), r.step.as_str())).collect();
        assert_eq!(order, [(0, "baseline"), (0, "edit"), (1, "baseline"), (1, "edit"), (2, "baseline"), (2, "edit"), (3, "baseline"), (3, "edit"), (4, "baseline"), (4, "edit")]);
        assert_eq!((merged.run_id.as_str(), merged.shard), ("run2+run1", None));

        let err = |files| merge(files).unwrap_err().to_string();
        assert_eq!(err(vec![shard(1, 2, &[0])]), "shard 2 of 2 is missing: give the results file of every shard");
        assert!(err(vec![shard(1, 2, &[0]), shard(1, 2, &[2])]).contains("are both shard 1/2"));
        assert!(err(vec![shard(1, 2, &[0]), shard(2, 3, &[1])]).contains("shard2.json is shard 2 of 3, but shard1.json is one of 2"));
        assert!(err(vec![shard(1, 2, &[0]), shard(2, 2, &[2])]).contains("shard2.json holds a build of cell 2, which is not in its shard 2/2"));
        let mut unsharded = shard(1, 1, &[0]);
        unsharded.1.shard = None;
        assert!(err(vec![unsharded]).contains("is not the results of a shard"));
    }

    #[test]
    fn shards_of_different_configurations_are_refused_naming_what_differs() {
        let (a, mut b) = (shard(1, 2, &[0]), shard(2, 2, &[1]));
        b.1.options.repetitions = 3;
        let e = merge(vec![a.clone(), b]).unwrap_err().to_string();
        assert!(e.starts_with("shard2.json comes from another configuration than shard1.json: its run options differ"), "{e}");
        let mut c = shard(2, 2, &[1]);
        c.1.git_commit = Some("abc".into());
        assert!(merge(vec![a, c]).unwrap_err().to_string().contains("its layerbench versions differ"));
    }
}
