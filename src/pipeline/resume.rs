//! The state of the stages that carry it (each log type's context, the
//! detectors, the alerts), taken for a checkpoint and resumed from one:
//! the same for live mode's `checkpoint.json` and a Kafka member's
//! `kafka-checkpoint.json`, so both modes restart alike.

use std::collections::BTreeMap;

use super::{Emitter, Lane};
use crate::alert::{AlertSetup, AlertStage};
use crate::detect::DetectStage;
use crate::features::ContextState;
use crate::follow::{OutputMark, SavedState};
use crate::log_kind::LogKind;
use crate::sink::{Cut, OutputSpec};

/// The stages' state, each part as the checkpoint holds it.
pub(crate) struct StageState {
    pub context: BTreeMap<LogKind, SavedState>,
    pub detectors: Option<SavedState>,
    pub alerts: Option<SavedState>,
}

impl StageState {
    /// Takes the state of `lanes` (those with context features) and of
    /// the emitter's detectors (when any run) and alerts.
    pub fn capture<'a>(
        lanes: impl IntoIterator<Item = &'a Lane>,
        emitter: &Emitter,
    ) -> Result<StageState, serde_json::Error> {
        let mut context = BTreeMap::new();
        for lane in lanes {
            if !lane.context().is_empty() {
                context.insert(lane.module(), SavedState::of(lane.context())?);
            }
        }
        let stage = emitter.stage();
        let detectors = match stage.is_active() {
            true => Some(SavedState::of(stage)?),
            false => None,
        };
        let alerts = match emitter.alerts() {
            Some(a) => Some(SavedState::of(a)?),
            None => None,
        };
        Ok(StageState {
            context,
            detectors,
            alerts,
        })
    }
}

/// Continues `lane`'s context from the checkpoint's; true when it starts
/// cold (nothing saved, or saved for other features) and has context
/// features to warm.
pub(crate) fn resume_context(lane: &mut Lane, saved: Option<&SavedState>) -> bool {
    let module = lane.module();
    if lane.context().is_empty() {
        return false;
    }
    match saved.map(|s| (s.len(), s.parse::<ContextState>())) {
        Some((bytes, Ok(state))) => {
            if lane.resume_context(state) {
                tracing::info!(
                    "{module}: the context resumes from the checkpoint ({bytes} bytes of state)"
                );
                return false;
            }
            tracing::warn!(
                "{module}: the checkpoint's context was kept for other context features: it starts afresh"
            );
        }
        Some((_, Err(e))) => {
            tracing::warn!(
                "{module}: the checkpoint's context cannot be read ({e}): it starts afresh"
            );
        }
        None => {}
    }
    true
}

/// `fresh` with its detectors continued from the checkpoint's (keeping
/// `fresh`'s allowlist and settings' baselines), and whether they were:
/// not when nothing was saved, the state cannot be read or it ran with
/// other `--detectors` settings (said).
pub(crate) fn resume_detectors(mut fresh: Emitter, saved: Option<&SavedState>) -> (Emitter, bool) {
    match saved.map(|s| (s.len(), s.parse::<DetectStage>())) {
        Some((bytes, Ok(stage))) => match stage.resume(fresh.stage().clone()) {
            Some(stage) => {
                tracing::info!("the detectors resume from the checkpoint ({bytes} bytes of state)");
                let mut resumed = Emitter::with_stage(stage);
                resumed.take_allowlist(&mut fresh);
                return (resumed, true);
            }
            None => tracing::warn!(
                "the checkpoint's detectors ran with other --detectors settings: they start afresh"
            ),
        },
        Some((_, Err(e))) => tracing::warn!(
            "the checkpoint's detector state cannot be read ({e}): the detectors start afresh"
        ),
        None => {}
    }
    (fresh, false)
}

/// Continues the emitter's alert stage from the checkpoint's, if one was
/// saved and can be read (said either way).
/// Whether the alerts resumed (else they start afresh, their names book
/// empty).
pub(crate) fn resume_alerts(
    emitter: &mut Emitter,
    saved: Option<&SavedState>,
    setup: &AlertSetup,
    modules: &[LogKind],
) -> bool {
    match saved.map(|s| (s.len(), s.parse::<AlertStage>())) {
        Some((bytes, Ok(stage))) => {
            tracing::info!("the alerts resume from the checkpoint ({bytes} bytes of state)");
            emitter.resume_alerts(stage, setup.opts, modules);
            true
        }
        Some((_, Err(e))) => {
            tracing::warn!(
                "the checkpoint's alert state cannot be read ({e}): alerts start afresh"
            );
            false
        }
        None => false,
    }
}

/// Where an output is cut back to at a restart: the checkpoint's mark of
/// it, when the mark names this output (the sink cuts only the very file
/// the mark measured).
pub(crate) fn cut_to(mark: Option<&OutputMark>, spec: &OutputSpec) -> Option<Cut> {
    mark.filter(|m| m.name == spec.to_string()).map(|m| Cut {
        len: m.len,
        file: m.id,
    })
}
