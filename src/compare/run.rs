//! The compare run: one `Run` (recorded like any) with a pool of on-demand sessions per relay;
//! stage by stage (one load level each), the same workload goes to every relay side by side,
//! sends issued round-robin across the relays, until the stage's time is up or a budget is
//! spent; each stage drains before the next. Every event is folded into the stage's `Metrics`
//! (counts, cost, goodput) and into bounded per-relay sample reservoirs (latencies, for the
//! quantiles and the bootstrap).

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;

use relaytop_core::compare::{RESERVOIR, Reservoir};
use relaytop_core::config::file::Provider;
use relaytop_core::metrics::{Metrics, Streaming, tokens_per_second};
use relaytop_core::record::RecordOptions;
use relaytop_core::report::human_duration;
use relaytop_core::run::{Ending, Run, RunSetup};
use relaytop_core::session::{
    Completed, EventKind, SessionCommand, SessionEvent, SessionInfo, SessionSpec, SessionState,
    Timing, Workload,
};
use relaytop_core::world::World;

use super::workload::{Load, Prompts, poisson};

/// Connections a relay's pool opens in open-loop mode, at most.
const OPEN_LOOP_POOL: u32 = 64;
/// A request with no outcome after this long frees its session anyway.
const LOST_AFTER: Duration = Duration::from_secs(120);

/// How `run` goes.
#[derive(Clone, Debug)]
pub struct CompareOptions {
    pub relays: Vec<String>,
    pub load: Load,
    /// How long each load level runs.
    pub stage: Duration,
    /// Prompt sizes, tokens; requests take them in turn.
    pub input_tokens: Vec<u32>,
    /// `max_tokens` asked of every request.
    pub max_tokens: u32,
    pub max_cost_usd: Option<f64>,
    pub max_requests: Option<u64>,
    /// Load time in all, at most.
    pub duration: Option<Duration>,
    pub seed: u64,
    pub record: Option<RecordOptions>,
    /// Progress lines on stderr.
    pub progress: bool,
    /// After a stage's last send, how long to wait for the responses under way.
    pub drain: Duration,
    pub connect_wait: Duration,
}

impl Default for CompareOptions {
    fn default() -> Self {
        Self {
            relays: Vec::new(),
            load: Load::Concurrency(vec![1, 2, 4, 8]),
            stage: Duration::from_secs(20),
            input_tokens: vec![100, 1000, 10_000],
            max_tokens: 64,
            max_cost_usd: None,
            max_requests: None,
            duration: None,
            seed: 21,
            record: None,
            progress: true,
            drain: Duration::from_secs(30),
            connect_wait: Duration::from_secs(10),
        }
    }
}

/// What one relay did at one load level.
#[derive(Clone, Debug)]
pub struct Cell {
    pub sent: u64,
    pub ttft_ms: Reservoir,
    pub e2e_ms: Reservoir,
    pub output_tps: Reservoir,
    pub itl_ms: Reservoir,
    /// Replies longer than the `max_tokens` asked.
    pub over_limit: u64,
    /// Replies that stopped for length short of the `max_tokens` asked.
    pub short: u64,
    /// The relay's own error classes (`RelayError`), by label.
    pub relay_errors: BTreeMap<String, u64>,
    /// Open loop: arrivals that waited for a free connection.
    pub queued: u64,
}

impl Cell {
    fn new(seed: u64) -> Self {
        Self {
            sent: 0,
            ttft_ms: Reservoir::new(RESERVOIR, seed),
            e2e_ms: Reservoir::new(RESERVOIR, seed + 1),
            output_tps: Reservoir::new(RESERVOIR, seed + 2),
            itl_ms: Reservoir::new(RESERVOIR, seed + 3),
            over_limit: 0,
            short: 0,
            relay_errors: BTreeMap::new(),
            queued: 0,
        }
    }
}

/// One load level, every relay.
pub struct Stage {
    pub level: f64,
    pub metrics: Metrics,
    /// By relay, in the order given.
    pub cells: Vec<Cell>,
    pub duration: Duration,
}

/// What the run did.
pub struct CompareRun {
    pub providers: Vec<Provider>,
    pub stages: Vec<Stage>,
    /// The time to first token of every relay over all levels (the ranking's samples).
    pub pooled_ttft_ms: Vec<Reservoir>,
    pub pooled_e2e_ms: Vec<Reservoir>,
    pub pooled_output_tps: Vec<Reservoir>,
    /// Why it ended: "the plan ran to its end", or the budget spent.
    pub ended_by: String,
    /// Whether a budget (or Ctrl-C) stopped it before the plan's end.
    pub stopped_early: bool,
    pub load_time: Duration,
    pub recorded_to: Option<PathBuf>,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, Default)]
struct Slot {
    relay: usize,
    up: bool,
    ended: bool,
    busy: Option<(Duration, usize)>,
    stream: Streaming,
}

/// Runs the comparison of `options.relays` of `world`.
pub async fn run(world: &World, options: &CompareOptions) -> anyhow::Result<CompareRun> {
    let mut providers = Vec::new();
    for name in &options.relays {
        providers.push(crate::against::target(world, name)?.clone());
    }
    if providers.is_empty() {
        anyhow::bail!("name two relays or more to compare (one is allowed, to measure it)");
    }
    let levels = options.load.levels();
    if levels.is_empty() {
        anyhow::bail!("no load level to run");
    }
    let mut notes = Vec::new();
    let wanted = match &options.load {
        Load::Concurrency(c) => c.iter().copied().max().unwrap_or(1),
        Load::Rate(_) => OPEN_LOOP_POOL,
    };
    let mut specs = Vec::new();
    let mut slots = Vec::new();
    let mut pools: Vec<Vec<usize>> = Vec::new();
    for (r, provider) in providers.iter().enumerate() {
        let pool = wanted.min(provider.max_connections.max(1));
        if pool < wanted {
            notes.push(format!(
                "{} allows {pool} connections: its pool has {pool}, not {wanted}",
                provider.name
            ));
        }
        let mut mine = Vec::new();
        for n in 1..=pool {
            let id = u32::try_from(specs.len()).unwrap_or(u32::MAX);
            mine.push(specs.len());
            slots.push(Slot {
                relay: r,
                ..Slot::default()
            });
            specs.push(SessionSpec {
                info: SessionInfo {
                    id,
                    name: format!("{}-compare-{n}", provider.name),
                    provider: provider.name.clone(),
                    model: provider.model.clone(),
                    protocol: provider.protocol,
                    url: provider.url.clone(),
                    workload: "compare".into(),
                },
                api_key: provider.api_key.clone(),
                auth: Default::default(),
                workload: Workload::OnDemand,
                timing: Timing::default(),
                seed: None,
                tap: None,
                limits: provider.limits.clone(),
                resolver: None,
            });
        }
        pools.push(mine);
    }
    let source = format!("compare {}", options.relays.join(" "));
    let setup = RunSetup::own_pool(specs, options.record.as_ref(), &source);
    let (run, mut events) = Run::start(world, setup)?;
    let clock = run.clock();
    let started_at = run.started_at();
    let infos = run.supervisor().infos().to_vec();
    let new_metrics = || {
        Metrics::new(infos.clone(), world.config.pricing().into())
            .with_slos(world.config.slo.clone())
    };
    let commander = run.supervisor().commander();
    let progress_live = options.progress && std::io::stderr().is_terminal();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut interrupted = false;

    // The prompts, sized with the first relay's model (the same texts go to every relay).
    let prompts = Prompts::sized(&options.input_tokens, &providers[0].model);
    let n_relays = providers.len();
    let mut pooled_ttft: Vec<Reservoir> = (0..n_relays)
        .map(|r| Reservoir::new(RESERVOIR, options.seed + r as u64))
        .collect();
    let mut pooled_e2e = pooled_ttft.clone();
    let mut pooled_tps = pooled_ttft.clone();
    let mut stages: Vec<Stage> = Vec::new();
    let mut stop: Option<String> = None;
    let mut stopped_early = false;

    struct Fold<'a> {
        slots: &'a mut [Slot],
        stage: Option<&'a mut Stage>,
        pooled: [&'a mut [Reservoir]; 3],
        max_tokens: u32,
    }
    fn fold(event: &SessionEvent, f: Fold<'_>) {
        let Fold {
            slots,
            stage,
            pooled,
            max_tokens,
        } = f;
        let [pooled_ttft, pooled_e2e, pooled_tps] = pooled;
        let Some(slot) = slots.get_mut(event.session as usize) else {
            return;
        };
        let relay = slot.relay;
        let mut stage = stage;
        if let Some(stage) = stage.as_deref_mut() {
            stage.metrics.apply(event);
        }
        match &event.kind {
            EventKind::State(state) => {
                slot.up = state.is_up();
                if matches!(state, SessionState::Stopped { .. } | SessionState::Closed) {
                    slot.ended = true;
                    slot.busy = None;
                }
            }
            EventKind::RequestSent { request, .. } => slot.stream.start(*request),
            EventKind::Chunk { request, text } => {
                slot.stream.chunk(*request, event.at_us, text.len() as u64)
            }
            EventKind::Done(done) => {
                let Completed {
                    request,
                    ttft_us,
                    answer_us,
                    total_us,
                    tokens,
                    finish_reason,
                    bytes,
                    cut,
                    ..
                } = &**done;
                slot.busy = None;
                let figures = slot.stream.figures(
                    *request,
                    event.at_us,
                    *ttft_us,
                    *answer_us,
                    *total_us,
                    tokens,
                    *bytes,
                );
                let Some(stage) = stage else { return };
                let Some(cell) = stage.cells.get_mut(relay) else {
                    return;
                };
                if cut.is_some() {
                    return;
                }
                let e2e = *total_us as f64 / 1000.0;
                cell.e2e_ms.push(e2e);
                pooled_e2e[relay].push(e2e);
                if let Some(t) = ttft_us {
                    let ms = *t as f64 / 1000.0;
                    cell.ttft_ms.push(ms);
                    pooled_ttft[relay].push(ms);
                }
                if let Some(tpot) = figures.tpot_us {
                    let tps = tokens_per_second(tpot);
                    cell.output_tps.push(tps);
                    pooled_tps[relay].push(tps);
                }
                for (gap, _) in figures.itl.iter().take(64) {
                    cell.itl_ms.push(*gap as f64 / 1000.0);
                }
                if tokens.output > u64::from(max_tokens) {
                    cell.over_limit += 1;
                }
                let for_length = finish_reason
                    .as_deref()
                    .is_some_and(|r| r == "length" || r == "max_tokens" || r == "MAX_TOKENS");
                if for_length && tokens.output < u64::from(max_tokens) {
                    cell.short += 1;
                }
            }
            EventKind::RequestFailed { .. } => {
                slot.busy = None;
                slot.stream.start(0);
            }
            EventKind::RelayError(error) => {
                if let Some(cell) = stage.and_then(|s| s.cells.get_mut(relay)) {
                    *cell
                        .relay_errors
                        .entry(error.class.label().to_owned())
                        .or_default() += 1;
                }
            }
            _ => {}
        }
    }
    macro_rules! fold_now {
        ($event:expr) => {{
            let event = $event;
            run.observe(&event);
            fold(
                &event,
                Fold {
                    slots: &mut slots,
                    stage: stages.last_mut(),
                    pooled: [&mut pooled_ttft, &mut pooled_e2e, &mut pooled_tps],
                    max_tokens: options.max_tokens,
                },
            );
        }};
    }

    // The pools connect first.
    let connect_deadline = tokio::time::Instant::now() + options.connect_wait;
    while !slots.iter().all(|s| s.up || s.ended) {
        tokio::select! {
            event = events.recv() => match event {
                Some(event) => fold_now!(event),
                None => break,
            },
            _ = tokio::time::sleep_until(connect_deadline) => break,
            _ = &mut ctrl_c => { interrupted = true; break; }
        }
    }
    for (r, provider) in providers.iter().enumerate() {
        let up = pools[r].iter().filter(|&&k| slots[k].up).count();
        if up < pools[r].len() {
            notes.push(format!(
                "{}: {up} of {} connections up when the load began",
                provider.name,
                pools[r].len()
            ));
        }
    }

    let load_start = clock.now();
    let mut sent_total: u64 = 0;
    let mut spent_before = 0.0;
    let mut request_counter: Vec<u64> = vec![0; n_relays];
    let mut prefix_rng = SmallRng::seed_from_u64(options.seed ^ 0x5eed);
    for (si, &level) in levels.iter().enumerate() {
        if stop.is_some() || interrupted {
            break;
        }
        stages.push(Stage {
            level,
            metrics: new_metrics(),
            cells: (0..n_relays)
                .map(|r| Cell::new(options.seed + 100 * (si as u64 + 1) + 10 * r as u64))
                .collect(),
            duration: Duration::ZERO,
        });
        let stage_start = clock.now();
        let stage_end = stage_start + options.stage;
        let arrivals = match &options.load {
            Load::Rate(_) => poisson(level, options.stage, options.seed + si as u64),
            Load::Concurrency(_) => Vec::new(),
        };
        let mut next_arrival = vec![0usize; n_relays];
        let concurrency = match &options.load {
            Load::Concurrency(_) => level.max(1.0) as usize,
            Load::Rate(_) => usize::MAX,
        };
        let mut round = 0usize;
        let mut last_progress = Duration::ZERO;
        loop {
            let now = clock.now();
            if now >= stage_end {
                break;
            }
            // Budgets.
            let spent = spent_before
                + stages
                    .last()
                    .map_or(0.0, |s| s.metrics.totals().counts.cost.total_usd());
            if let Some(max) = options.max_requests
                && sent_total >= max
            {
                stop = Some(format!("--max-requests {max} reached ({sent_total} sent)"));
            } else if let Some(max) = options.max_cost_usd
                && spent >= max
            {
                stop = Some(format!("--max-cost ${max} spent (${spent:.4})"));
            } else if let Some(max) = options.duration
                && now.saturating_sub(load_start) >= max
            {
                stop = Some(format!(
                    "--duration {} of load used",
                    human_duration(max.as_micros() as u64)
                ));
            }
            if stop.is_some() {
                stopped_early = true;
                break;
            }
            for slot in slots.iter_mut() {
                if slot
                    .busy
                    .is_some_and(|(since, _)| now.saturating_sub(since) > LOST_AFTER)
                {
                    slot.busy = None;
                }
            }
            // Round-robin across the relays, starting one further each round.
            let mut wake = now + Duration::from_millis(100);
            for j in 0..n_relays {
                let r = (round + j) % n_relays;
                let pool = &pools[r];
                loop {
                    if options.max_requests.is_some_and(|max| sent_total >= max) {
                        break;
                    }
                    let due = match &options.load {
                        Load::Concurrency(_) => {
                            let busy = pool.iter().filter(|&&k| slots[k].busy.is_some()).count();
                            busy < concurrency
                        }
                        Load::Rate(_) => match arrivals.get(next_arrival[r]) {
                            Some(&at) if stage_start + at <= now => true,
                            Some(&at) => {
                                wake = wake.min(stage_start + at);
                                false
                            }
                            None => false,
                        },
                    };
                    if !due {
                        break;
                    }
                    let Some(&k) = pool
                        .iter()
                        .take(concurrency.min(pool.len()))
                        .find(|&&k| slots[k].up && slots[k].busy.is_none())
                    else {
                        if matches!(options.load, Load::Rate(_)) {
                            // Waits for a connection; counted once.
                            if let Some(cell) = stages.last_mut().and_then(|s| s.cells.get_mut(r)) {
                                cell.queued += 1;
                            }
                        }
                        break;
                    };
                    let (_, messages) = prompts.request(request_counter[r], &mut prefix_rng);
                    let command = SessionCommand::SendMessages {
                        messages,
                        max_tokens: Some(options.max_tokens),
                    };
                    let id = u32::try_from(k).unwrap_or(u32::MAX);
                    if commander.command(id, command) {
                        slots[k].busy = Some((now, si));
                        request_counter[r] += 1;
                        sent_total += 1;
                        next_arrival[r] += 1;
                        if let Some(cell) = stages.last_mut().and_then(|s| s.cells.get_mut(r)) {
                            cell.sent += 1;
                        }
                    } else {
                        slots[k].up = false;
                        break;
                    }
                }
            }
            round += 1;
            if slots.iter().all(|s| s.ended) {
                stop = Some("every connection ended".into());
                stopped_early = true;
                break;
            }
            if progress_live && now.saturating_sub(last_progress) >= Duration::from_millis(500) {
                last_progress = now;
                if let Some(stage) = stages.last() {
                    eprint!(
                        "\r{}   ",
                        progress_line(
                            &providers,
                            stage,
                            &options.load,
                            si,
                            levels.len(),
                            now.saturating_sub(stage_start),
                            options.stage
                        )
                    );
                }
            }
            let sleep = tokio::time::sleep_until(clock.instant_at(wake.max(now)));
            tokio::select! {
                event = events.recv() => {
                    let Some(event) = event else { break };
                    fold_now!(event);
                    while let Ok(event) = events.try_recv() {
                        fold_now!(event);
                    }
                }
                _ = sleep => {}
                _ = &mut ctrl_c => { interrupted = true; stopped_early = true; stop = Some("Ctrl-C".into()); break; }
            }
        }
        // Drain: the responses under way end in this stage.
        let drain_end = clock.now() + options.drain;
        while slots.iter().any(|s| s.busy.is_some()) && !interrupted {
            let now = clock.now();
            if now >= drain_end {
                notes.push(format!(
                    "stage {}: some responses had not ended {} after its end; left out",
                    si + 1,
                    human_duration(options.drain.as_micros() as u64)
                ));
                for slot in slots.iter_mut() {
                    slot.busy = None;
                }
                break;
            }
            let sleep = tokio::time::sleep_until(clock.instant_at(drain_end));
            tokio::select! {
                event = events.recv() => {
                    let Some(event) = event else { break };
                    fold_now!(event);
                }
                _ = sleep => {}
                _ = &mut ctrl_c => { interrupted = true; stopped_early = true; stop = Some("Ctrl-C".into()); }
            }
        }
        if let Some(stage) = stages.last_mut() {
            stage.duration = clock.now().saturating_sub(stage_start);
            spent_before += stage.metrics.totals().counts.cost.total_usd();
            if options.progress {
                if progress_live {
                    eprint!("\r{:100}\r", "");
                }
                for line in stage_lines(&providers, stage, &options.load, si, levels.len()) {
                    eprintln!("{line}");
                }
            }
        }
    }
    let load_time = clock.now().saturating_sub(load_start);
    let ended_by = stop.unwrap_or_else(|| "every load level ran".into());
    let ending = Ending {
        reason: format!("compare: {ended_by}"),
        duration: clock.now(),
    };
    let mut closing = Vec::new();
    let finished = run
        .finish(events, ending, |event| closing.push(event.clone()))
        .await?;
    for event in closing {
        fold(
            &event,
            Fold {
                slots: &mut slots,
                stage: None,
                pooled: [&mut pooled_ttft, &mut pooled_e2e, &mut pooled_tps],
                max_tokens: options.max_tokens,
            },
        );
    }
    Ok(CompareRun {
        providers,
        stages,
        pooled_ttft_ms: pooled_ttft,
        pooled_e2e_ms: pooled_e2e,
        pooled_output_tps: pooled_tps,
        ended_by,
        stopped_early,
        load_time,
        recorded_to: finished.recorded_to,
        started_at,
        notes,
    })
}

fn progress_line(
    providers: &[Provider],
    stage: &Stage,
    load: &Load,
    si: usize,
    stages: usize,
    elapsed: Duration,
    span: Duration,
) -> String {
    let mut line = format!(
        "relaytop compare: stage {}/{stages} ({}) {:.0}/{:.0} s:",
        si + 1,
        load.describe_level(stage.level),
        elapsed.as_secs_f64(),
        span.as_secs_f64()
    );
    for (r, p) in providers.iter().enumerate() {
        let c = stage.metrics.provider(&p.name).map(|s| &s.counts);
        let sent = stage.cells.get(r).map_or(0, |c| c.sent);
        line.push_str(&format!(
            " {} {sent} sent {} done {} failed;",
            p.name,
            c.map_or(0, |c| c.responses_completed),
            c.map_or(0, |c| c.requests_failed)
        ));
    }
    line
}

/// One line per relay at the end of a stage.
fn stage_lines(
    providers: &[Provider],
    stage: &Stage,
    load: &Load,
    si: usize,
    stages: usize,
) -> Vec<String> {
    providers
        .iter()
        .enumerate()
        .map(|(r, p)| {
            let c = stage.metrics.provider(&p.name).map(|s| &s.counts);
            let cell = stage.cells.get(r);
            let ttft = cell
                .and_then(|c| relaytop_core::compare::median(c.ttft_ms.values()))
                .map_or("-".into(), |m| format!("{m:.0} ms"));
            format!(
                "relaytop compare: stage {}/{stages} ({}) {:>12}: {} sent, {} done, {} failed, {} cut, TTFT p50 {ttft}",
                si + 1,
                load.describe_level(stage.level),
                p.name,
                cell.map_or(0, |c| c.sent),
                c.map_or(0, |c| c.responses_completed),
                c.map_or(0, |c| c.requests_failed),
                c.map_or(0, |c| c.responses_cut),
            )
        })
        .collect()
}
