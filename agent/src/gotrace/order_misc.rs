//! The task, region, GC, range and annotation handlers of the ordering state machine,
//! ported from Go 1.27.3's `internal/trace/order.go` (the rest of [`Ordering`] is in
//! `order.rs` and `order_go.rs`).

use super::base::{BaseEvent, EvTable, GoID, ProcID, StringId, TraceError};
use super::event::{BACKGROUND_TASK, NO_TASK};
use super::order::{
    Advanced, GState, GcState, MAY_HAVE, MUST_HAVE, Ordering, SchedCtx, SchedReqs, Step, TaskState,
    USER_GO_REQS, UserRegion, broken, make_range_type, set_extra, validate_ctx,
};
use super::spec;

impl Ordering {
    /// order.go: advanceUserTaskBegin. Tasks need no Begin to be referenced and an End may
    /// appear several times; all that is checked is that a task does not begin twice.
    pub(crate) fn advance_user_task_begin(&mut self, s: Step<'_>) -> Advanced {
        let Step(ev, evt, _, cur) = s;
        let id = ev.args[0];
        if self.active_tasks.contains_key(&id) {
            return Err(broken(format!("task ID conflict: {id}")));
        }
        // Get the parent ID, but don't validate it: whether it's active is unknown.
        let mut parent_id = ev.args[1];
        if parent_id == BACKGROUND_TASK {
            // 0 here means no parent, *not* the background task, which only regions get.
            parent_id = NO_TASK;
            ev.args[1] = NO_TASK;
        }
        // Validate the name and record it: EvUserTaskEnd needs it.
        let name = string_arg(ev, evt, 2)?.clone();
        self.active_tasks.insert(id, TaskState { name, parent_id });
        validate_ctx(cur, USER_GO_REQS)?;
        self.accept(evt, cur, ev, cur)
    }

    /// order.go: advanceUserTaskEnd.
    pub(crate) fn advance_user_task_end(&mut self, s: Step<'_>) -> Advanced {
        let Step(ev, evt, _, cur) = s;
        let id = ev.args[0];
        // Smuggle the task info: the End may be in a later generation whose string table
        // lacks the name, so it goes to the extra strings.
        let (parent, name_id) = match self.active_tasks.remove(&id) {
            Some(ts) => (ts.parent_id, evt.add_extra_string(&ts.name)),
            // Explicitly clear the task info.
            None => (NO_TASK, evt.add_extra_string("")),
        };
        set_extra(ev, 0, parent);
        set_extra(ev, 1, name_id);
        validate_ctx(cur, USER_GO_REQS)?;
        self.accept(evt, cur, ev, cur)
    }

    /// order.go: advanceUserRegionBegin.
    pub(crate) fn advance_user_region_begin(&mut self, s: Step<'_>) -> Advanced {
        let Step(ev, evt, _, cur) = s;
        let (g_state, region) = self.region_event(ev, evt, cur, "EvUserRegionBegin")?;
        g_state.begin_region(region);
        self.accept(evt, cur, ev, cur)
    }

    /// order.go: advanceUserRegionEnd.
    pub(crate) fn advance_user_region_end(&mut self, s: Step<'_>) -> Advanced {
        let Step(ev, evt, _, cur) = s;
        let (g_state, region) = self.region_event(ev, evt, cur, "EvUserRegionEnd")?;
        g_state.end_region(region)?;
        self.accept(evt, cur, ev, cur)
    }

    /// What the region handlers share: the context check, the region `[task, name]` the
    /// event names, and the state of the current goroutine, whose regions it changes.
    fn region_event(
        &mut self,
        ev: &BaseEvent,
        evt: &EvTable,
        cur: SchedCtx,
        go_name: &str,
    ) -> Result<(&mut GState, UserRegion), TraceError> {
        validate_ctx(cur, USER_GO_REQS)?;
        let task_id = ev.args[0];
        let name = string_arg(ev, evt, 1)?.clone();
        let g_state = self.current_g_state(cur.g, format_args!("{go_name}"))?;
        Ok((g_state, UserRegion { task_id, name }))
    }

    /// order.go: advanceGCActive. The GC mark phase has sequence numbers on both ends, since
    /// they can be on different threads: an explicit partial order, rather than relying on
    /// timestamps not to advance the GCEnd of a *different* cycle.
    pub(crate) fn advance_gc_active(&mut self, s: Step<'_>) -> Advanced {
        let Step(ev, evt, generation, cur) = s;
        let seq = ev.args[0];
        if generation == self.initial_gen {
            if self.gc_state != GcState::Undetermined {
                return Err(broken(
                    "GCActive in the first generation isn't first GC event".to_string(),
                ));
            }
            self.gc_seq = seq;
            self.gc_state = GcState::Running;
            return self.accept(evt, cur, ev, cur);
        }
        if seq != self.gc_seq.wrapping_add(1) {
            // This is not the right GC cycle.
            return Ok(None);
        }
        if self.gc_state != GcState::Running {
            return Err(broken(
                "encountered GCActive while GC was not in progress".to_string(),
            ));
        }
        self.gc_seq = seq;
        validate_ctx(cur, USER_GO_REQS)?;
        self.accept(evt, cur, ev, cur)
    }

    /// order.go: advanceGCBegin.
    pub(crate) fn advance_gc_begin(&mut self, s: Step<'_>) -> Advanced {
        let Step(ev, evt, _, cur) = s;
        let seq = ev.args[0];
        if self.gc_state == GcState::Undetermined {
            self.gc_seq = seq;
            self.gc_state = GcState::Running;
            return self.accept(evt, cur, ev, cur);
        }
        if seq != self.gc_seq.wrapping_add(1) {
            // This is not the right GC cycle.
            return Ok(None);
        }
        if self.gc_state == GcState::Running {
            return Err(broken(
                "encountered GCBegin while GC was already in progress".to_string(),
            ));
        }
        self.gc_seq = seq;
        self.gc_state = GcState::Running;
        validate_ctx(cur, USER_GO_REQS)?;
        self.accept(evt, cur, ev, cur)
    }

    /// order.go: advanceGCEnd.
    pub(crate) fn advance_gc_end(&mut self, s: Step<'_>) -> Advanced {
        let Step(ev, evt, _, cur) = s;
        let seq = ev.args[0];
        if seq != self.gc_seq.wrapping_add(1) {
            // This is not the right GC cycle.
            return Ok(None);
        }
        if self.gc_state == GcState::NotRunning {
            return Err(broken(
                "encountered GCEnd when GC was not in progress".to_string(),
            ));
        }
        if self.gc_state == GcState::Undetermined {
            return Err(broken(
                "encountered GCEnd when GC was in an undetermined state".to_string(),
            ));
        }
        self.gc_seq = seq;
        self.gc_state = GcState::NotRunning;
        validate_ctx(cur, USER_GO_REQS)?;
        self.accept(evt, cur, ev, cur)
    }

    /// order.go: advanceAnnotation, simple instantaneous events that require a G.
    pub(crate) fn advance_annotation(&mut self, s: Step<'_>) -> Advanced {
        let Step(ev, evt, _, cur) = s;
        validate_ctx(cur, USER_GO_REQS)?;
        self.accept(evt, cur, ev, cur)
    }

    /// order.go: advanceHeapMetric, allocation metrics, which don't require a G.
    pub(crate) fn advance_heap_metric(&mut self, s: Step<'_>) -> Advanced {
        let Step(ev, evt, _, cur) = s;
        validate_ctx(cur, SchedReqs::new(MUST_HAVE, MUST_HAVE, MAY_HAVE))?;
        self.accept(evt, cur, ev, cur)
    }

    /// order.go: advanceGCSweepBegin. Sweeping is bound to a P and doesn't require a G.
    pub(crate) fn advance_gc_sweep_begin(&mut self, s: Step<'_>) -> Advanced {
        let Step(ev, evt, _, cur) = s;
        validate_ctx(cur, SchedReqs::new(MUST_HAVE, MUST_HAVE, MAY_HAVE))?;
        // Go dereferences o.pStates[curCtx.P] unchecked (a nil-pointer panic on a broken
        // trace); this reports an error instead.
        self.proc_found_during(cur.p, ev.typ)?
            .range_state
            .begin_range(make_range_type(ev.typ, 0))?;
        self.accept(evt, cur, ev, cur)
    }

    /// order.go: advanceGCSweepActive. Ps can't block while sweeping, so this can only be
    /// about cur.P in practice, but Go is lenient about it, as with GCMarkAssistActive.
    pub(crate) fn advance_gc_sweep_active(&mut self, s: Step<'_>) -> Advanced {
        let Step(ev, evt, generation, cur) = s;
        let pid = ev.args[0] as ProcID;
        let initial = generation == self.initial_gen;
        let Some(p_state) = self.p_states.get_mut(&pid) else {
            return Err(broken(format!(
                "encountered GCSweepActive for unknown proc {pid}"
            )));
        };
        p_state
            .range_state
            .active_range(make_range_type(ev.typ, 0), initial)?;
        self.accept(evt, cur, ev, cur)
    }

    /// order.go: advanceGCSweepEnd.
    pub(crate) fn advance_gc_sweep_end(&mut self, s: Step<'_>) -> Advanced {
        let Step(ev, evt, _, cur) = s;
        validate_ctx(cur, SchedReqs::new(MUST_HAVE, MUST_HAVE, MAY_HAVE))?;
        self.proc_found_during(cur.p, ev.typ)?
            .range_state
            .end_range(ev.typ)?;
        self.accept(evt, cur, ev, cur)
    }

    /// order.go: advanceGoRangeBegin, special goroutine-bound ranges (STW, mark assist).
    pub(crate) fn advance_go_range_begin(&mut self, s: Step<'_>) -> Advanced {
        let Step(ev, evt, _, cur) = s;
        validate_ctx(cur, USER_GO_REQS)?;
        let desc = if ev.typ == spec::EV_STW_BEGIN {
            ev.args[0]
        } else {
            0
        };
        let g_state = self.current_g_state(cur.g, format_args!("event of type {}", ev.typ))?;
        g_state
            .range_state
            .begin_range(make_range_type(ev.typ, desc))?;
        self.accept(evt, cur, ev, cur)
    }

    /// order.go: advanceGoRangeActive. Like GoStatus it may name a goroutine that is not
    /// running, so nothing is checked about the current context.
    pub(crate) fn advance_go_range_active(&mut self, s: Step<'_>) -> Advanced {
        let Step(ev, evt, generation, cur) = s;
        let gid = ev.args[0] as GoID;
        let initial = generation == self.initial_gen;
        let name = self.ev_name(ev.typ);
        let Some(g_state) = self.g_states.get_mut(&gid) else {
            return Err(broken(format!(
                "uninitialized goroutine {gid} found during {name}"
            )));
        };
        g_state
            .range_state
            .active_range(make_range_type(ev.typ, 0), initial)?;
        self.accept(evt, cur, ev, cur)
    }

    /// order.go: advanceGoRangeEnd.
    pub(crate) fn advance_go_range_end(&mut self, s: Step<'_>) -> Advanced {
        let Step(ev, evt, _, cur) = s;
        validate_ctx(cur, USER_GO_REQS)?;
        let g_state = self.current_g_state(cur.g, format_args!("event of type {}", ev.typ))?;
        let desc = g_state.range_state.end_range(ev.typ)?;
        if ev.typ == spec::EV_STW_END {
            // Smuggle the kind into the event (not in extra, for symmetry with STWBegin).
            ev.args[0] = desc;
        }
        self.accept(evt, cur, ev, cur)
    }

    /// order.go: advanceAllocFree, simple instantaneous events that may or may not have a P.
    pub(crate) fn advance_alloc_free(&mut self, s: Step<'_>) -> Advanced {
        let Step(ev, evt, _, cur) = s;
        validate_ctx(cur, SchedReqs::new(MUST_HAVE, MAY_HAVE, MAY_HAVE))?;
        self.accept(evt, cur, ev, cur)
    }
}

/// The string an event names in argument `i` (Go's "invalid string ID" error if unknown).
fn string_arg<'t>(ev: &BaseEvent, evt: &'t EvTable, i: usize) -> Result<&'t String, TraceError> {
    let name_id: StringId = ev.args[i];
    evt.strings
        .get(name_id)
        .ok_or_else(|| broken(format!("invalid string ID {name_id} for {} event", ev.typ)))
}
