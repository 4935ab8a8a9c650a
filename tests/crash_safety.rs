//! Crash safety of golden writes (issue #8): a blessing process killed with SIGKILL at any point
//! leaves the store loadable, holding exactly the old or the new golden; concurrent writers of
//! the same golden (processes or threads) never corrupt it; and a killed writer's temp file is
//! never taken for a golden.
//!
//! The writers are this test binary re-run as a child (`writer_process`, below): the same
//! library call a blessing makes (`GoldenStore::write`, in place), on goldens large enough
//! (~2 MB) that a write takes milliseconds, so random kills land inside writes.

mod common;

use common::{golden, golden_path, lossdiff_in, stdout};
use lossdiff::fsutil::{remove_stale_temp_files, temp_file_pid};
use lossdiff::golden::{Golden, GoldenStore, UpdateAction};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const WRITER_ENV: &str = "LOSSDIFF_CRASH_TEST_WRITER";
/// Printed by a writer just before its first write (libtest may print on the same line first).
const READY: &str = "writer-ready";
const SEEDS: usize = 4;
const STEPS: u64 = 20_000;

/// The two versions every writer alternates between, told apart by spec hash and content.
fn version(n: u8) -> Golden {
    golden(&format!("v{n}"), SEEDS, STEPS + u64::from(n))
}

/// Body of the writer processes the tests spawn; does nothing unless spawned by them.
/// `LOSSDIFF_CRASH_TEST_WRITER=<root>;<versions, e.g. 12>;<writes, 0 = until killed>`.
#[test]
#[ignore = "writer process for the crash-safety tests, spawned (and killed) by them"]
fn writer_process() {
    let Ok(spec) = std::env::var(WRITER_ENV) else {
        return;
    };
    let mut parts = spec.split(';');
    let store = GoldenStore::new(parts.next().unwrap());
    let versions: Vec<Golden> = parts
        .next()
        .unwrap()
        .bytes()
        .map(|b| version(b - b'0'))
        .collect();
    let writes: usize = parts.next().unwrap().parse().unwrap();
    println!("{READY}");
    for i in 0.. {
        if writes > 0 && i == writes {
            break;
        }
        store
            .write(&versions[i % versions.len()], UpdateAction::InPlace)
            .unwrap();
    }
}

/// Spawns a writer process on `root`, writing `versions` in turn `writes` times (0: forever),
/// and returns once it is about to write.
fn spawn_writer(root: &Path, versions: &str, writes: usize) -> Child {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["writer_process", "--exact", "--ignored", "--nocapture"])
        .args(["--test-threads", "1"])
        .env(
            WRITER_ENV,
            format!("{};{versions};{writes}", root.display()),
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().contains(READY) {
            break;
        }
    }
    // Keep reading so the writer's last words (libtest's summary) never hit a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    child
}

/// Loads the golden and returns which version it is, failing on anything else.
#[track_caller]
fn which_version(root: &Path, v1: &Golden, v2: &Golden) -> u8 {
    let g = Golden::load(&golden_path(root)).expect("the golden always loads");
    match (g == *v1, g == *v2) {
        (true, _) => 1,
        (_, true) => 2,
        _ => panic!("golden is neither version: {}", g.provenance.spec_hash),
    }
}

fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if temp_file_pid(&e.path()).is_some() {
            out.push(e.path());
        }
    }
    out
}

/// xorshift64: the kill delays are random but the same on every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn a_blessing_killed_at_random_points_leaves_the_old_or_the_new_golden() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("golden");
    let (v1, v2) = (version(1), version(2));
    let store = GoldenStore::new(&root);
    let started = std::time::Instant::now();
    store.write(&v1, UpdateAction::InPlace).unwrap();
    // Kills spread over the writer's first four writes, whatever this machine's speed.
    let window = (4 * started.elapsed().as_micros() as u64).max(1_000);
    let golden_dir = golden_path(&root).parent().unwrap().to_path_buf();
    let mut rng = Rng(0x5EED_CAFE);
    let (mut seen, mut interrupted) = ([0usize; 3], 0);
    for _ in 0..60 {
        let mut child = spawn_writer(&root, "21", 0);
        std::thread::sleep(Duration::from_micros(rng.below(window)));
        child.kill().unwrap(); // SIGKILL on Unix: no destructor, no cleanup
        child.wait().unwrap();
        seen[usize::from(which_version(&root, &v1, &v2))] += 1;
        if !temp_files(&golden_dir).is_empty() {
            interrupted += 1;
        }
        assert_eq!(
            store.goldens(),
            vec![golden_path(&root)],
            "temp files are not goldens"
        );
        assert!(
            store.pending().is_empty(),
            "temp files are not pending goldens"
        );
        remove_stale_temp_files(&root).unwrap();
        assert!(
            temp_files(&golden_dir).is_empty(),
            "a dead writer's temp file is removed"
        );
    }
    eprintln!("60 kills in {window} µs windows: {interrupted} interrupted a write; seen {seen:?}");
    // The test means something only if kills landed inside writes and both versions were seen.
    assert!(
        interrupted >= 5,
        "only {interrupted} of 60 kills interrupted a write"
    );
    assert!(seen[1] > 0 && seen[2] > 0, "versions seen: {seen:?}");
}

#[test]
fn two_processes_blessing_the_same_golden_at_once_never_corrupt_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("golden");
    let (v1, v2) = (version(1), version(2));
    GoldenStore::new(&root)
        .write(&v1, UpdateAction::InPlace)
        .unwrap();
    let mut writers = [spawn_writer(&root, "1", 40), spawn_writer(&root, "2", 40)];
    let mut reads = 0;
    while writers.iter_mut().any(|w| w.try_wait().unwrap().is_none()) {
        which_version(&root, &v1, &v2);
        reads += 1;
    }
    for w in &mut writers {
        assert!(w.wait().unwrap().success(), "a writer failed");
    }
    which_version(&root, &v1, &v2);
    assert!(reads > 0);
    assert!(temp_files(golden_path(&root).parent().unwrap()).is_empty());
}

#[test]
fn threads_of_one_process_writing_the_same_golden_never_share_a_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = GoldenStore::new(dir.path());
    let (v1, v2) = (golden("v1", 2, 2_000), golden("v2", 2, 2_001));
    std::thread::scope(|s| {
        for g in [&v1, &v2, &v1, &v2] {
            let store = &store;
            s.spawn(move || {
                for _ in 0..25 {
                    store
                        .write(g, UpdateAction::InPlace)
                        .expect("every write succeeds");
                }
            });
        }
    });
    which_version(dir.path(), &v1, &v2);
}

#[test]
fn golden_check_removes_a_dead_writers_temp_file_and_ignores_it_as_a_golden() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("golden");
    let store = GoldenStore::new(&root);
    store.write(&version(1), UpdateAction::InPlace).unwrap();
    // What a writer with pid 0 (never a user process) killed mid-write leaves behind.
    let stray = golden_path(&root).with_file_name(".a.golden.json.0.7.tmp");
    std::fs::write(&stray, "{\"format\": \"lossdiff-gol").unwrap();
    std::fs::create_dir(dir.path().join("experiments")).unwrap();
    let o = lossdiff_in(dir.path(), &["golden", "check"], &[]);
    let out = stdout(&o);
    assert!(
        out.contains("removed golden/exp/default/.a.golden.json.0.7.tmp"),
        "{out}"
    );
    assert!(
        out.contains("unused golden: golden/exp/default/a.golden.json"),
        "{out}"
    );
    assert_eq!(out.matches("unused golden").count(), 1, "{out}");
    assert!(!stray.exists());
}

#[test]
fn two_golden_accepts_at_once_both_succeed_and_bless_the_pending_golden() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("golden");
    let store = GoldenStore::new(&root);
    let (v1, v2) = (golden("v1", 2, 2_000), golden("v2", 2, 2_001));
    for _ in 0..10 {
        store.write(&v1, UpdateAction::InPlace).unwrap();
        store.write(&v2, UpdateAction::NewFile).unwrap();
        let accept = || {
            Command::new(env!("CARGO_BIN_EXE_lossdiff"))
                .args(["golden", "accept"])
                .current_dir(dir.path())
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        };
        let mut both = [accept(), accept()];
        for c in &mut both {
            assert!(c.wait().unwrap().success(), "an accept failed");
        }
        assert_eq!(which_version(&root, &v1, &v2), 2);
        assert!(store.pending().is_empty());
    }
}
