//! The library's one error type. Every variant names what went wrong and where (file, key, step),
//! because these messages are what a user reads when a gate fails at 3 a.m.

use std::path::PathBuf;

/// Bytes in a GiB, for messages.
const GIB: f64 = (1u64 << 30) as f64;

/// Errors returned by the lossdiff library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // === Tensor backend ===
    /// An error from candle (shape mismatch, unsupported dtype, …).
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),

    // === Files ===
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A JSON file did not parse.
    #[error("{}: invalid JSON at line {line}, column {column}: {message}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What the parser expected.
        message: String,
    },
    /// A TOML file did not parse.
    #[error("{}: invalid TOML: {message}", path.display())]
    Toml {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },

    /// A path read from a file (a summary's `figure_path`, a spec's `include`) that leads out of
    /// the directory it belongs to: absolute, through `..`, or through a symlink.
    #[error("{}: `{key}` = {path:?} is outside {}; expected a relative path inside that directory (no absolute path, no `..`, no symlink leading out)", file.display(), dir.display())]
    PathOutsideDir {
        /// The file that named the path.
        file: PathBuf,
        /// The key that held it.
        key: String,
        /// The path as written.
        path: String,
        /// The directory it must stay in.
        dir: PathBuf,
    },
    /// An input that is not a regular file (a FIFO, a device, a directory): reading it could
    /// block forever or never end.
    #[error("{}: is {kind}, not a regular file; lossdiff reads inputs from regular files (save the stream to a file first)", path.display())]
    NotARegularFile {
        /// The path given.
        path: PathBuf,
        /// What it is instead, e.g. `a FIFO (named pipe)`.
        kind: &'static str,
    },

    // === Configuration ===
    /// A config key that no section knows.
    #[error("{origin}: unknown key `{key}`{}", suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    UnknownKey {
        /// The file or flag the key came from.
        origin: String,
        /// The key as written.
        key: String,
        /// The closest valid key, when one is close.
        suggestion: Option<String>,
    },
    /// A config key with a value of the wrong kind or out of range.
    #[error("{origin}: `{key}` = {got}: expected {expected}")]
    InvalidValue {
        /// The file or flag the value came from.
        origin: String,
        /// The key.
        key: String,
        /// What would have been accepted.
        expected: String,
        /// What was given.
        got: String,
    },

    /// A run whose estimated memory footprint is over the training budget (see `footprint`).
    #[error("{origin}: training needs about {bytes} bytes ({:.2} GiB) by estimate, over the limit of {limit} bytes ({:.2} GiB); the largest part is {part} ({:.2} GiB): lower {knobs}, or raise the limit with LOSSDIFF_MAX_TRAIN_BYTES=<bytes> if the machine has the memory", *bytes as f64 / GIB, *limit as f64 / GIB, *part_bytes as f64 / GIB)]
    TrainTooLarge {
        /// The spec or flag the config came from.
        origin: String,
        /// The estimated total.
        bytes: u64,
        /// The budget.
        limit: u64,
        /// The largest part of the estimate.
        part: &'static str,
        /// Its bytes.
        part_bytes: u64,
        /// The config keys that shrink it.
        knobs: &'static str,
    },
    /// Specs that include each other in a loop.
    #[error("include cycle: {}; a spec may not include itself, directly or through others", chain.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" includes "))]
    IncludeCycle {
        /// The chain of including specs, ending with the one that closes the loop.
        chain: Vec<PathBuf>,
    },

    // === Traces ===
    /// A trace written with a schema this build does not read.
    #[error("{}: trace schema version {found} was written by a newer lossdiff (v{written_by}), this is v{} reading schema {supported}; upgrade lossdiff", path.display(), env!("CARGO_PKG_VERSION"))]
    TraceSchema {
        /// The trace file.
        path: PathBuf,
        /// The lossdiff version recorded in the trace's fingerprint (`?` when absent).
        written_by: String,
        /// Version found in the file.
        found: u32,
        /// Newest version this build reads.
        supported: u32,
    },
    /// A trace that parsed but breaks an invariant (lengths, step order).
    #[error("{}: invalid trace: {reason}", path.display())]
    InvalidTrace {
        /// The trace file (or a description of where the trace came from).
        path: PathBuf,
        /// Which invariant failed.
        reason: String,
    },

    // === Goldens ===
    /// A golden written by a newer lossdiff.
    #[error("{}: golden format version {found} was written by a newer lossdiff (v{written_by}), this is v{} reading format {supported}; upgrade lossdiff", path.display(), env!("CARGO_PKG_VERSION"))]
    GoldenVersion {
        /// The golden file.
        path: PathBuf,
        /// The lossdiff version recorded in the golden's provenance (`?` when absent).
        written_by: String,
        /// Version found.
        found: u32,
        /// Newest version this build reads.
        supported: u32,
    },
    /// A golden whose content no longer matches the digest its writer stored.
    #[error("{}: golden does not match its digest (stored {stored}, content {computed}): the file was corrupted or edited by hand after blessing; restore it (`git checkout -- {}`) or re-bless it with `LOSSDIFF_UPDATE=always lossdiff run <spec>`", path.display(), path.display())]
    GoldenDigest {
        /// The golden file.
        path: PathBuf,
        /// The digest in the file (`none` when the field is missing).
        stored: String,
        /// The digest of the content as read.
        computed: String,
    },
    /// A golden written before goldens carried a digest: its values cannot be verified.
    #[error("{}: golden format version {found} has no digest, so a hand edit cannot be told from the blessed values; if the file is as blessed (check `git log -p` on it), seal it with `lossdiff golden migrate`, else re-bless it with `LOSSDIFF_UPDATE=always lossdiff run <spec>`", path.display())]
    GoldenUnsealed {
        /// The golden file.
        path: PathBuf,
        /// Version found.
        found: u32,
    },
    /// A golden whose content was blessed for another experiment, cell or arm than its path says.
    #[error("{}: this is the golden of {found}, but the path belongs to {expected}; a golden copied or renamed by hand is not a blessing: re-bless it with `LOSSDIFF_UPDATE=always lossdiff run <spec>`", path.display())]
    GoldenKey {
        /// The golden file.
        path: PathBuf,
        /// `experiment/cell/arm` the path belongs to.
        expected: String,
        /// `experiment/cell/arm` recorded inside the file.
        found: String,
    },
    /// A digest-less golden whose summary does not follow from its traces (refused by migration).
    #[error("{}: {what} in the summary is {stored}, but its traces give {computed}: the file was edited after blessing, so it is not sealed; re-bless it with `LOSSDIFF_UPDATE=always lossdiff run <spec>`", path.display())]
    GoldenInconsistent {
        /// The golden file.
        path: PathBuf,
        /// The summary field.
        what: String,
        /// Its value in the file.
        stored: String,
        /// Its value recomputed from the traces.
        computed: String,
    },

    // === Training ===
    /// Naive attention would materialise a score matrix larger than the configured cap.
    #[error("naive attention at sequence length {seq_len} needs {bytes} bytes ({:.2} GiB) for its score matrices, over the cap of {cap} bytes; use `attention = \"flash\"` or raise `max_attention_bytes`", *bytes as f64 / (1u64 << 30) as f64)]
    AttentionTooLarge {
        /// The sequence length requested.
        seq_len: usize,
        /// Bytes the score and probability matrices would take.
        bytes: u64,
        /// The configured cap.
        cap: u64,
    },

    // === Import ===
    /// A line, key or record of an imported file that does not have the shape its format needs.
    #[error("{}: {place}: expected {expected}, got {got}", path.display())]
    Parse {
        /// The imported file.
        path: PathBuf,
        /// Where in the file: `line 12`, `key "lm loss"/"values"/"7"`, `record 3 at byte 120`.
        place: String,
        /// What the importer needed there.
        expected: String,
        /// What it found (quoted and shortened).
        got: String,
    },
    /// An input file over the size limit (files are parsed whole; see `limits`).
    #[error("{}: {size} bytes ({:.1} MiB) is over the input limit of {limit} bytes ({:.1} MiB); lossdiff reads input files whole, so raise the limit with LOSSDIFF_MAX_INPUT_BYTES=<bytes> if the machine has about twice the file size in free memory", path.display(), *size as f64 / 1048576.0, *limit as f64 / 1048576.0)]
    InputTooLarge {
        /// The file.
        path: PathBuf,
        /// Its size in bytes (at least, for a file read until the limit was passed).
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// A file whose content matches none of the formats lossdiff imports.
    #[error("{}: cannot tell the format from the content ({hint}); pass the format explicitly, one of: {valid}", path.display())]
    UnknownFormat {
        /// The file.
        path: PathBuf,
        /// What the file looked like.
        hint: String,
        /// The format names that are accepted.
        valid: String,
    },
    /// A file that parsed but holds no training steps.
    #[error("{}: no training steps found: {reason}", path.display())]
    EmptyInput {
        /// The file.
        path: PathBuf,
        /// Why nothing was found.
        reason: String,
    },
    /// A TensorBoard record whose checksum does not match its bytes (a truncated or corrupted file).
    #[error("{}: record at byte {offset}: {what} checksum mismatch (stored {stored:#010x}, computed {computed:#010x}); the event file is corrupted or truncated", path.display())]
    Crc {
        /// The event file.
        path: PathBuf,
        /// Byte offset of the record's start.
        offset: u64,
        /// Which checksum: `length` or `data`.
        what: &'static str,
        /// The masked CRC32C stored in the file.
        stored: u32,
        /// The masked CRC32C of the bytes read.
        computed: u32,
    },
    /// A JSON object holding one key twice: every JSON parser keeps one silently, so which value
    /// the writer meant is a guess lossdiff does not make.
    #[error("{}: {place}: key {key} appears twice in one object; remove one (a JSON parser would silently keep the last)", path.display())]
    DuplicateKey {
        /// The imported file.
        path: PathBuf,
        /// Where: `line 3`, or `line 12, in "values"` (the object's own key).
        place: String,
        /// The repeated key, quoted.
        key: String,
    },
    /// A series asked for (`--metric`) that an imported file does not have.
    #[error("{}: no series `{metric}`; the file has: {available}", path.display())]
    NoSuchSeries {
        /// The file (or trace name).
        path: PathBuf,
        /// The series asked for.
        metric: String,
        /// The series present, with their cadence.
        available: String,
    },
    /// A series whose steps repeat or go backwards (e.g. a log of a resumed run that re-ran steps).
    #[error("{}: {place}: series `{series}` has step {step} after step {previous}: steps must be strictly increasing", path.display())]
    StepOrder {
        /// The imported file.
        path: PathBuf,
        /// Where the offending step was read.
        place: String,
        /// The series (lossdiff name).
        series: String,
        /// The step read before it.
        previous: u64,
        /// The repeated or earlier step.
        step: u64,
    },

    // === Comparison ===
    /// A statistic was given fewer observations than it needs.
    #[error("{statistic}: needs at least {needed} observations, got {got}")]
    TooFewObservations {
        /// The statistic or procedure (e.g. `welch_ttest`).
        statistic: &'static str,
        /// Minimum number of observations.
        needed: usize,
        /// Number given.
        got: usize,
    },
    /// A statistic was given a NaN or infinite input.
    #[error("{statistic}: input {index} is not finite ({value})")]
    NonFiniteInput {
        /// The statistic or procedure.
        statistic: &'static str,
        /// 0-based index of the offending value.
        index: usize,
        /// The value.
        value: f64,
    },
    /// A statistic's denominator is zero (all observations equal), so it is undefined.
    #[error("{statistic}: zero variance, the statistic is undefined")]
    ZeroVariance {
        /// The statistic or procedure.
        statistic: &'static str,
    },
    /// A setting or parameter outside its valid range.
    #[error("{name} = {got}: expected {expected}")]
    InvalidParameter {
        /// The parameter.
        name: &'static str,
        /// What would have been accepted.
        expected: &'static str,
        /// What was given.
        got: String,
    },
    /// A comparison was asked for with no trace in one arm.
    #[error("arm {arm}: no traces to compare")]
    EmptyArm {
        /// The arm (`a`, `b` or `perturbation`).
        arm: &'static str,
    },
    /// A trace lacks the metric being compared.
    #[error("trace `{trace}` (arm {arm}): no series `{metric}`")]
    MissingMetric {
        /// The metric name.
        metric: String,
        /// The trace's name.
        trace: String,
        /// The arm it belongs to.
        arm: &'static str,
    },
    /// The arms share no step at which to compare.
    #[error("traces `{a}` and `{b}` have no step in common")]
    ArmsShareNoStep {
        /// A trace of arm A.
        a: String,
        /// A trace of arm B (or of the perturbation ensemble).
        b: String,
    },
    /// The arms share a single step: one point is no curve, and "identical" on it would claim
    /// far more than it shows.
    #[error("traces `{a}` and `{b}` share only step {step}: one point is not a curve; a comparison needs at least 2 common steps")]
    SingleCommonStep {
        /// A trace of arm A.
        a: String,
        /// A trace of arm B (or of the perturbation ensemble).
        b: String,
        /// The one common step.
        step: u64,
    },
    /// Both arms are non-finite at every common step: two broken runs, not a match.
    #[error("traces `{a}` and `{b}` have no common step where `{metric}` is finite ({common} common steps, all NaN or inf in both): nothing to compare")]
    NoFiniteCommonStep {
        /// A trace of arm A.
        a: String,
        /// A trace of arm B.
        b: String,
        /// The metric compared.
        metric: String,
        /// Number of common steps.
        common: usize,
    },
    /// Too few common (finite) steps for the statistical lane.
    #[error("{what}: {got} usable common steps, need at least {needed}")]
    TooFewSteps {
        /// What was being computed.
        what: &'static str,
        /// Minimum number of steps.
        needed: usize,
        /// Steps available.
        got: usize,
    },
    /// An arm lists the same run twice (the same file, or bitwise-identical curves).
    #[error("arm {arm}: `{first}` and `{second}` are the same run ({why}); a copy is not another seed and would inflate significance — pass each run once")]
    DuplicateTrace {
        /// The arm (`a`, `b` or `perturbation`).
        arm: &'static str,
        /// The first trace.
        first: String,
        /// Its duplicate.
        second: String,
        /// How they were found to be the same.
        why: String,
    },
    /// A perturbation trace ends before the arms: the yardstick would not cover the comparison.
    #[error("perturbation trace `{trace}` ends at step {last_step}, the arms at step {arms_last_step}: the rounding yardstick must cover every compared step (re-run the perturbations, or pass --common-steps to compare the common steps only)")]
    ShortYardstick {
        /// The perturbation trace.
        trace: String,
        /// Its last step.
        last_step: u64,
        /// The arms' last step.
        arms_last_step: u64,
    },

    // === Attention kernels ===
    /// Attention inputs the fused kernel cannot take (mismatched shapes, dtype, dropout rate).
    #[error("flash attention: {reason}")]
    AttentionInput {
        /// What was wrong with the inputs.
        reason: String,
    },

    // === Shards ===
    /// A shard directory that does not belong with the others given to one merge.
    #[error("shard {}: {reason}", dir.display())]
    ShardMismatch {
        /// The shard's report directory.
        dir: PathBuf,
        /// What conflicts, and with which directory.
        reason: String,
    },
    /// A merge whose directories hold no results at all.
    #[error("no shard results in {}: no directory has an experiments.json; did every task fail? (see the task logs)", dirs.join(", "))]
    NoShardResults {
        /// The directories given.
        dirs: Vec<String>,
    },

    // === Reports ===
    /// Figure input that cannot be drawn as given (mismatched lengths, unknown sweep value).
    #[error("figure '{figure}': {reason}")]
    InvalidFigure {
        /// The figure's title.
        figure: String,
        /// What is inconsistent.
        reason: String,
    },
    /// The plotting backend failed while drawing or encoding a figure.
    #[error("figure '{figure}': rendering failed: {message}")]
    Render {
        /// The figure's title.
        figure: String,
        /// The backend's message.
        message: String,
    },
    /// A report file could not be written into its directory.
    #[error("cannot write report into {}: {}: {source}; check that the directory is writable", dir.display(), file.display())]
    ReportWrite {
        /// The report directory.
        dir: PathBuf,
        /// The file being written (or read, for a figure given by path).
        file: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },

    // === External commands ===
    /// A `{placeholder}` in an external arm's command that names no run value or config key.
    #[error("{origin}: unknown placeholder `{{{placeholder}}}` in the command{}; valid: {{seed}}, {{perturb_seed}}, {{out}}, {{cell}}, {{arm}} and any config or sweep key", suggestion.as_ref().map(|s| format!(" (did you mean `{{{s}}}`?)")).unwrap_or_default())]
    UnknownPlaceholder {
        /// The spec and arm (or the run) the command belongs to.
        origin: String,
        /// The placeholder's name, without braces.
        placeholder: String,
        /// The closest valid name, when one is close.
        suggestion: Option<String>,
    },
    /// An external command template that cannot be split into words.
    #[error("{origin}: bad command: {reason}")]
    CommandSyntax {
        /// The spec and arm (or the run) the command belongs to.
        origin: String,
        /// What is wrong (unclosed quote, stray brace, …).
        reason: String,
    },
    /// An external command that could not be started.
    #[error("{run}: cannot start `{command}` in {}: {source}; check the program exists and `workdir` is right", workdir.display())]
    CommandSpawn {
        /// The run id.
        run: String,
        /// The resolved command line.
        command: String,
        /// The directory it was started in.
        workdir: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// An external command that failed, was killed or timed out.
    #[error("{run}: `{command}` {reason}\n{tail}")]
    CommandFailed {
        /// The run id.
        run: String,
        /// The resolved command line.
        command: String,
        /// Exit status, signal or timeout.
        reason: ExitReason,
        /// The last lines of its stderr and stdout.
        tail: String,
    },
    /// An external command that succeeded but whose trace could not be imported.
    #[error("{run}: `{command}` succeeded but its trace is unreadable: {source}\n{tail}")]
    ExternalTrace {
        /// The run id.
        run: String,
        /// The resolved command line.
        command: String,
        /// The importer's error.
        source: Box<Error>,
        /// The last lines of its stderr and stdout.
        tail: String,
    },

    // === Benchmarks ===
    /// A cell of `lossdiff bench speed` whose child process failed or printed no timing.
    #[error("bench cell `{command}` {reason}\n{tail}")]
    BenchCell {
        /// The child's command line.
        command: String,
        /// What went wrong (could not start, exit status, no timing line).
        reason: String,
        /// The last lines of its stderr (and stdout, when it printed no timing).
        tail: String,
    },
    /// A file given to `lossdiff bench speed --readme` without the markers the tables go between.
    #[error("{}: no `{marker}` marker; the generated tables replace the lines between `<!-- speed:begin -->` and `<!-- speed:end -->`, so add both (in that order) where they belong", path.display())]
    SpeedMarkers {
        /// The file.
        path: PathBuf,
        /// The marker not found (after the begin marker, for the end one).
        marker: String,
    },
}

/// How an external process ended, when it did not succeed. It lives here, not in `external`,
/// because [`Error::CommandFailed`] carries it and errors import nothing above them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    /// It exited with this non-zero status.
    Code(i32),
    /// A signal ended it.
    Signal(i32),
    /// It ran past its time limit and was killed (with its process group).
    TimedOut(std::time::Duration),
}

impl std::fmt::Display for ExitReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitReason::Code(c) => write!(f, "exited with status {c}"),
            ExitReason::Signal(s) => write!(f, "killed by signal {s}"),
            ExitReason::TimedOut(d) => write!(f, "timed out after {} s", d.as_secs_f64()),
        }
    }
}

/// Shorthand for results with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Wraps a JSON error with the path it concerns.
    pub fn json(path: impl Into<PathBuf>, e: &serde_json::Error) -> Self {
        Error::Json {
            path: path.into(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        }
    }
}
