//! NIFs behind `Thunderbolt.Serving`: the queue and the batch runs live
//! here, in native code, so a served request costs the BEAM one NIF call
//! and one message instead of three process hops and Elixir binary work.
//!
//! * `serving_submit` runs in the caller's process, on its normal
//!   scheduler: it copies the inputs, queues them under their batch key
//!   (`thunderbolt_runtime::batch`) and returns the request's id at once.
//! * `serving_run` runs in a runner process, on its normal scheduler (or
//!   `serving_run_dirty`, once a full batch is measured to take longer than
//!   the session's normal-scheduler budget): it takes one ready batch from
//!   `thunderbolt_runtime`'s `BatchQueue`, runs it, and sends each caller its
//!   own rows as `{:"$thunderbolt_serving", id, result}`. With nothing
//!   ready the runner parks, and the submit that makes work ready wakes it
//!   with a message; so does the queue's `DueTimer` thread when a partial
//!   batch's timeout passes while a batch runs that is expected to end
//!   later. Everything stays on the BEAM's own schedulers: runners
//!   that blocked on dirty I/O threads instead were measured slower, the
//!   operating system switching four busy threads on two cores.
//! * `serving_cancel` is how a caller that timed out withdraws; it says
//!   whether an answer is still on its way.
//! * `serving_close` (the owning process's `terminate/2`, or the resource's
//!   monitor of that process when it is killed) fails the queued callers
//!   with `{:serving_down, reason}`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustler::types::tuple::make_tuple;
use rustler::{
    Atom, Binary, Encoder, Env, ListIterator, LocalPid, Monitor, OwnedBinary, OwnedEnv,
    ResourceArc, Term,
};
use thunderbolt_runtime::batch::{self, BatchKey, RowData};
use thunderbolt_runtime::{
    Batch, BatchQueue, Cancel, DueTimer, Entry, QueueConfig, RuntimeError, SubmitError, Taken,
};

use crate::error::NifError;
use crate::session::{out_binary, SessionRef};
use crate::tensor_struct;
use crate::tensor_struct::tensor_views;

rustler::atoms! {
    ok,
    error,
    idle,
    closed,
    cancelled,
    answered,
    overloaded,
    serving_down,
    runner_down,
    nif_panicked,
    killed,
    reply_tag = "$thunderbolt_serving",
    wake = "$thunderbolt_serving_wake",
    dirty,
    infinity,
    requests,
    rejected,
    skipped,
    timed_out,
    batches,
    rows,
    batched_requests,
    fallbacks,
    queue_depth,
}

/// A queued request: who to answer, and its rows.
struct Caller {
    pid: LocalPid,
    data: RowData,
}

#[derive(Default)]
struct Counters {
    batches: AtomicU64,
    rows: AtomicU64,
    batched_requests: AtomicU64,
    fallbacks: AtomicU64,
}

pub struct ServingQueue {
    queue: BatchQueue<BatchKey, Caller>,
    /// Per model input: is its leading dimension dynamic (the batch axis)?
    batch_axes: Vec<bool>,
    next_alone: AtomicU64,
    counters: Counters,
    /// Why the queue was closed, in the external term format, for callers
    /// that submit after the close.
    close_reason: Mutex<Option<Vec<u8>>>,
    /// Runner processes waiting for work; a submit that makes work ready
    /// wakes one with a message.
    parked: Arc<Mutex<Vec<LocalPid>>>,
    /// Wakes a parked runner when a partial batch's timeout falls due, to
    /// the microsecond rather than the BEAM timer's millisecond. `None` if
    /// its thread could not start; runners' own timeouts still fire.
    due_timer: Option<DueTimer>,
    /// When each running batch is expected to end, by runner (`None`: not
    /// measured yet), so that the timer is armed only when no running
    /// batch will end before a deadline: one that ends first makes the
    /// waiting batch ready itself, and under full load that is every time.
    running_until: Mutex<Vec<(LocalPid, Option<Instant>)>>,
    /// Input bytes per row, learned from the first batch run (0 before),
    /// to estimate how long a ready batch will take.
    row_bytes: AtomicU64,
}

#[rustler::resource_impl]
impl rustler::Resource for ServingQueue {
    /// The owning process ran `terminate/2`, which closed the queue with its
    /// reason, unless it was killed outright: then this closes it.
    fn down<'a>(&'a self, env: Env<'a>, _pid: LocalPid, _monitor: Monitor) {
        self.close(env, killed().encode(env));
    }
}

impl ServingQueue {
    fn close<'a>(&self, env: Env<'a>, reason: Term<'a>) {
        {
            let mut saved = self.close_reason.lock().unwrap_or_else(|p| p.into_inner());
            if saved.is_none() {
                *saved = Some(reason.to_binary().as_slice().to_vec());
            }
        }
        let reply = (error(), (serving_down(), reason)).encode(env);
        for entry in self.queue.close() {
            answer(env, &entry, reply);
        }
        for runner in self
            .parked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            let _ = env.send(&runner, wake().encode(env));
        }
    }

    fn park(&self, runner: LocalPid) {
        let mut parked = self.parked.lock().unwrap_or_else(|p| p.into_inner());
        if !parked.contains(&runner) {
            parked.push(runner);
        }
    }

    fn unpark(&self, runner: LocalPid) {
        self.parked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|r| *r != runner);
    }

    /// Wakes the runner that parked last (see `wake_first_parked`). Aliveness
    /// is asked rather than read from the send, which also fails when the
    /// sender is exiting: that must not use up the live runners.
    fn wake_one(&self, env: Env<'_>) {
        wake_first_parked(&self.parked, |runner| {
            env.is_process_alive(runner) && {
                let _ = env.send(&runner, wake().encode(env));
                true
            }
        });
    }

    /// The input bytes of a batch of `rows` rows (0 until a batch ran).
    fn batch_bytes(&self, rows: usize) -> usize {
        self.row_bytes.load(Ordering::Relaxed) as usize * rows
    }

    /// Has a parked runner woken at `due`, unless a running batch is
    /// expected to end by then (see `running_until`).
    fn wake_at(&self, due: Instant) {
        let Some(timer) = &self.due_timer else {
            return;
        };
        let ends_first = self
            .running_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|(_, end)| end.is_some_and(|end| end <= due));
        if !ends_first {
            timer.arm(due);
        }
    }

    fn close_reason<'a>(&self, env: Env<'a>) -> Term<'a> {
        let saved = self.close_reason.lock().unwrap_or_else(|p| p.into_inner());
        saved
            .as_deref()
            .and_then(|bytes| env.binary_to_term(bytes))
            .map_or_else(|| closed().encode(env), |(term, _)| term)
    }

    fn count(&self, batches: u64, requests: &[&RowData]) {
        let c = &self.counters;
        c.batches.fetch_add(batches, Ordering::Relaxed);
        c.batched_requests
            .fetch_add(requests.len() as u64, Ordering::Relaxed);
        let rows: usize = requests.iter().map(|r| r.rows).sum();
        c.rows.fetch_add(rows as u64, Ordering::Relaxed);
    }

    /// Runs a batch and answers its callers. If the merged run fails (say
    /// one request holds a token id the model rejects), each request runs
    /// again alone, so only the faulty one gets the error.
    fn execute<'a>(
        &self,
        env: Env<'a>,
        session: &SessionRef,
        mut batch: Batch<'_, BatchKey, Caller>,
    ) {
        let results = {
            let parts: Vec<&RowData> = batch.entries().iter().map(|e| &e.payload.data).collect();
            match run(env, session, batch.key(), &parts, &self.row_bytes) {
                Ok(results) => {
                    self.count(1, &parts);
                    results
                }
                Err(e) if parts.len() == 1 => {
                    self.count(1, &parts);
                    vec![(error(), e.exception(env)).encode(env)]
                }
                Err(_) => {
                    self.counters.fallbacks.fetch_add(1, Ordering::Relaxed);
                    self.count(parts.len() as u64, &parts);
                    parts
                        .iter()
                        .map(|part| {
                            match run(env, session, batch.key(), &[part], &self.row_bytes) {
                                Ok(mut one) => one.pop().expect("one result per request"),
                                Err(e) => (error(), e.exception(env)).encode(env),
                            }
                        })
                        .collect()
                }
            }
        };
        // Everything that can fail has run: claim, then answer, so that a
        // caller is answered exactly once, by this or by its own cancel.
        let wanted = batch.claim();
        let answers = batch
            .entries()
            .iter()
            .zip(wanted)
            .zip(results)
            .filter(|((_, wanted), _)| *wanted)
            .map(|((entry, _), result)| (entry, result));
        deliver(env, answers);
    }
}

fn message<'a>(env: Env<'a>, entry: &Entry<Caller>, result: Term<'a>) -> Term<'a> {
    make_tuple(
        env,
        &[reply_tag().encode(env), entry.id.encode(env), result],
    )
}

/// Sends a message from a process that stays alive while it sends (a
/// queue's owner, or a monitor callback). A caller that died meanwhile
/// cannot be sent to, and nobody waits for it.
fn answer<'a>(env: Env<'a>, entry: &Entry<Caller>, result: Term<'a>) {
    let _ = env.send(&entry.payload.pid, message(env, entry, result));
}

/// Sends a runner's answers. `enif_send` fails once the sending process
/// is exiting, which happens to a runner killed while its batch ran (the
/// NIF call still completes), and `enif_is_process_alive` on the runner may
/// not say so yet. So every answer that fails is copied out and sent again
/// from a thread of our own, the only kind that may send without a process;
/// for a caller that is really gone, that send fails too, harmlessly.
fn deliver<'a, 'e>(env: Env<'a>, answers: impl Iterator<Item = (&'e Entry<Caller>, Term<'a>)>) {
    let mut stranded = Vec::new();
    for (entry, result) in answers {
        let message = message(env, entry, result);
        if env.send(&entry.payload.pid, message).is_err() {
            let owned = OwnedEnv::new();
            let saved = owned.save(message);
            stranded.push((entry.payload.pid, owned, saved));
        }
    }
    if !stranded.is_empty() {
        std::thread::spawn(move || {
            for (pid, mut owned, saved) in stranded {
                let _ = owned.send_and_clear(&pid, |env| saved.load(env));
            }
        });
    }
}

/// One ONNX Runtime call for `parts` (all of `key`), returning each
/// request's `{:ok, %{name => %Thunderbolt.Tensor{}}}`. Each output lands
/// in one BEAM binary (written there by ONNX Runtime once a batch of this
/// shape was seen, else copied once); requests get sub-binaries of it.
fn run<'a>(
    env: Env<'a>,
    session: &SessionRef,
    key: &BatchKey,
    parts: &[&RowData],
    row_bytes: &AtomicU64,
) -> Result<Vec<Term<'a>>, NifError> {
    let inputs = key.concat(parts);
    let views = inputs
        .iter()
        .map(|input| input.view())
        .collect::<Result<Vec<_>, _>>()?;
    let row_counts: Vec<usize> = parts.iter().map(|p| p.rows).collect();
    let rows: usize = row_counts.iter().sum();
    let bytes: usize = views.iter().map(|v| v.data().len()).sum();
    if let Some(per_row) = bytes.checked_div(rows) {
        row_bytes.store(per_row as u64, Ordering::Relaxed);
    }
    let outputs = session.model.run_into(
        &views,
        key.outputs.as_deref(),
        |bytes| Some(OwnedBinary::new(bytes)),
        |out| {
            Ok((
                out.index,
                out.element_type,
                out.shape,
                Binary::from_owned(out_binary(out.data), env),
            ))
        },
    )?;

    let specs = &session.model.info().outputs;
    let mut columns = Vec::with_capacity(outputs.len());
    for (index, ty, shape, bin) in &outputs {
        let spec = &specs[*index];
        let pieces = batch::split(spec, shape, bin.len(), &row_counts).ok_or_else(|| {
            NifError::from(RuntimeError::Ort(format!(
                "output {:?} has shape {shape:?}, not one row per input row",
                spec.name
            )))
        })?;
        columns.push((
            spec.name.as_str().encode(env),
            tensor_struct::type_term(env, *ty),
            bin,
            pieces,
        ));
    }

    (0..parts.len())
        .map(|request| {
            let mut pairs = Vec::with_capacity(columns.len());
            for (name, ty, bin, pieces) in &columns {
                let (shape, range) = &pieces[request];
                let data = if range.len() == bin.len() {
                    bin.to_term(env)
                } else {
                    bin.make_subbinary(range.start, range.len())
                        .map_err(|_| NifError::invalid_input("output slice out of range"))?
                        .to_term(env)
                };
                pairs.push((*name, tensor_struct::encode(env, *ty, shape, data)));
            }
            let map = Term::map_from_pairs(env, &pairs)
                .map_err(|_| NifError::invalid_input("duplicate output names"))?;
            Ok((ok(), map).encode(env))
        })
        .collect()
}

/// A batch's entry in `ServingQueue::running_until`, removed when the
/// batch ends, panics included.
struct Running<'q> {
    queue: &'q ServingQueue,
    runner: LocalPid,
}

impl<'q> Running<'q> {
    fn start(queue: &'q ServingQueue, runner: LocalPid, end: Option<Instant>) -> Self {
        queue
            .running_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((runner, end));
        Self { queue, runner }
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.queue
            .running_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(runner, _)| *runner != self.runner);
    }
}

/// Pops parked runners, the last to park first, until `wake` says it woke
/// one: runners that died while parked are passed over, so a wake-up is
/// never spent on a dead process while a live one sleeps.
fn wake_first_parked(parked: &Mutex<Vec<LocalPid>>, mut wake: impl FnMut(LocalPid) -> bool) {
    let mut parked = parked.lock().unwrap_or_else(|p| p.into_inner());
    while let Some(runner) = parked.pop() {
        if wake(runner) {
            return;
        }
    }
}

/// `ServingQueue::wake_one` for the due timer's thread, which has no
/// process of its own: a send to a runner that died fails, and the next
/// parked runner is tried.
fn wake_from_thread(parked: &Mutex<Vec<LocalPid>>, owned: &mut OwnedEnv) {
    wake_first_parked(parked, |runner| {
        owned
            .send_and_clear(&runner, |env| wake().encode(env))
            .is_ok()
    });
}

/// Options of a new queue, validated by `Thunderbolt.Serving.Config`.
#[derive(rustler::NifMap)]
pub struct QueueOptions {
    batch_axes: Vec<bool>,
    batch_size: usize,
    batch_timeout_us: u64,
    max_queue: usize,
}

/// A queue owned, and monitored, by the calling process.
#[rustler::nif]
fn serving_new(env: Env<'_>, options: QueueOptions) -> ResourceArc<ServingQueue> {
    let parked = Arc::new(Mutex::new(Vec::new()));
    let queue = ResourceArc::new(ServingQueue {
        queue: BatchQueue::new(QueueConfig {
            batch_size: options.batch_size,
            batch_timeout: Duration::from_micros(options.batch_timeout_us),
            max_queue: options.max_queue,
        }),
        batch_axes: options.batch_axes,
        next_alone: AtomicU64::new(0),
        counters: Counters::default(),
        close_reason: Mutex::new(None),
        due_timer: DueTimer::start("tb_serving_timer", {
            let parked = Arc::clone(&parked);
            let mut owned = OwnedEnv::new();
            move || wake_from_thread(&parked, &mut owned)
        })
        .ok(),
        parked,
        running_until: Mutex::new(Vec::new()),
        row_bytes: AtomicU64::new(0),
    });
    env.monitor(&queue, &env.pid());
    queue
}

/// Queues the caller's inputs (`%Thunderbolt.Tensor{}` in input order,
/// already checked by `Thunderbolt.Serving.Request`) and returns
/// `{:ok, id}`, or `{:error, :overloaded}`, `{:error, {:serving_down,
/// reason}}` or `{:error, %Thunderbolt.Error{}}`.
#[rustler::nif]
fn serving_submit<'a>(
    env: Env<'a>,
    queue: ResourceArc<ServingQueue>,
    inputs: ListIterator<'a>,
    outputs: Option<Vec<usize>>,
) -> Term<'a> {
    let prepared = tensor_views(inputs, |views| {
        BatchKey::new(&queue.batch_axes, views, outputs, || {
            queue.next_alone.fetch_add(1, Ordering::Relaxed)
        })
        .map_err(NifError::from)
    });
    let (key, data) = match prepared {
        Ok(prepared) => prepared,
        Err(e) => return (error(), e.exception(env)).encode(env),
    };
    let caller = Caller {
        pid: env.pid(),
        data,
    };
    match queue.queue.submit_waking(key, caller.data.rows, caller) {
        Ok((id, wake)) => {
            if wake {
                queue.wake_one(env);
            }
            (ok(), id).encode(env)
        }
        Err(SubmitError::Overloaded) => (error(), overloaded()).encode(env),
        Err(SubmitError::Closed) => {
            (error(), (serving_down(), queue.close_reason(env))).encode(env)
        }
    }
}

/// Withdraws request `id`: `:cancelled` when it will never be answered,
/// `:answered` when its answer has been or is being sent.
#[rustler::nif]
fn serving_cancel(queue: ResourceArc<ServingQueue>, id: u64) -> Atom {
    match queue.queue.cancel(id) {
        Cancel::Withdrawn => cancelled(),
        Cancel::TooLate => answered(),
    }
}

/// Runs one ready batch on `session`, on the caller's scheduler, and
/// answers its callers: `:ok`. With nothing ready the runner parks: it is
/// woken by a `:"$thunderbolt_serving_wake"` message when a submit makes
/// work ready, and gets `{:idle, microseconds}` until the earliest queued
/// request falls due (or `:infinity`). `:closed` once the queue is closed.
#[rustler::nif]
fn serving_run<'a>(
    env: Env<'a>,
    queue: ResourceArc<ServingQueue>,
    session: ResourceArc<SessionRef>,
) -> Term<'a> {
    // A batch known to fit the normal scheduler's budget runs here;
    // otherwise, or before one of its size was measured, the runner goes
    // dirty. With nothing ready it parks here, which costs nothing.
    if let Some(rows) = queue.queue.ready_rows() {
        let bytes = queue.batch_bytes(rows);
        if bytes == 0 || !session.fits_normal_scheduler(bytes) {
            return dirty().encode(env);
        }
    }
    let started = Instant::now();
    let result = run_ready(env, &queue, &session);
    let percent = (started.elapsed().as_micros() / 10).clamp(1, 100) as i32;
    rustler::schedule::consume_timeslice(env, percent);
    result
}

/// `serving_run` for batches too long for a normal scheduler.
#[rustler::nif(schedule = "DirtyCpu")]
fn serving_run_dirty<'a>(
    env: Env<'a>,
    queue: ResourceArc<ServingQueue>,
    session: ResourceArc<SessionRef>,
) -> Term<'a> {
    run_ready(env, &queue, &session)
}

fn run_ready<'a>(env: Env<'a>, queue: &ServingQueue, session: &SessionRef) -> Term<'a> {
    let me = env.pid();
    // Twice: parking between the two looks closes the race with a submit
    // that finds no parked runner just before this one parks.
    for attempt in 0..2 {
        match queue
            .queue
            .take_batch(Duration::ZERO, |caller| env.is_process_alive(caller.pid))
        {
            Taken::Batch(batch) => {
                if attempt == 1 {
                    queue.unpark(me);
                }
                let end = session
                    .expected_run_ns(queue.batch_bytes(batch.rows()))
                    .map(|ns| Instant::now() + Duration::from_nanos(ns));
                let _running = Running::start(queue, me, end);
                queue.execute(env, session, batch);
                return ok().encode(env);
            }
            Taken::Orphans(orphans) => {
                if attempt == 1 {
                    queue.unpark(me);
                }
                let reply = (error(), (runner_down(), nif_panicked())).encode(env);
                deliver(env, orphans.iter().map(|entry| (entry, reply)));
                return ok().encode(env);
            }
            Taken::Closed => {
                queue.unpark(me);
                return closed().encode(env);
            }
            Taken::Idle if attempt == 0 => queue.park(me),
            Taken::Idle => {}
        }
    }
    match queue.queue.next_ready_in() {
        Some(wait) => {
            queue.wake_at(Instant::now() + wait);
            (idle(), (wait.as_micros() as u64).max(1)).encode(env)
        }
        None => (idle(), infinity()).encode(env),
    }
}

/// Closes the queue and fails its queued callers with
/// `{:error, {:serving_down, reason}}`. Batches already running finish.
#[rustler::nif]
fn serving_close<'a>(env: Env<'a>, queue: ResourceArc<ServingQueue>, reason: Term<'a>) -> Atom {
    queue.close(env, reason);
    ok()
}

/// The queue's counters, as a map with atom keys.
#[rustler::nif]
fn serving_stats(env: Env<'_>, queue: ResourceArc<ServingQueue>) -> Term<'_> {
    let stats = queue.queue.stats();
    let c = &queue.counters;
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let pairs = [
        (requests(), stats.requests),
        (rejected(), stats.rejected),
        (skipped(), stats.skipped),
        (timed_out(), stats.cancelled),
        (batches(), load(&c.batches)),
        (rows(), load(&c.rows)),
        (batched_requests(), load(&c.batched_requests)),
        (fallbacks(), load(&c.fallbacks)),
        (queue_depth(), stats.pending as u64),
    ];
    let pairs: Vec<(Term, Term)> = pairs
        .iter()
        .map(|(k, v)| (k.encode(env), v.encode(env)))
        .collect();
    Term::map_from_pairs(env, &pairs).expect("distinct keys")
}
