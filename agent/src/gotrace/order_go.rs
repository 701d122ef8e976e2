//! The proc and goroutine handlers of the ordering state machine, ported from Go 1.27.3's
//! `internal/trace/order.go` (the rest of [`Ordering`] is in `order.rs`).

use super::base::{
    BaseEvent, GoID, NO_GOROUTINE, NO_PROC, NO_THREAD, ProcID, ThreadID, TraceError,
};
use super::event::{Event, GoState, ProcState, go_status_to_state, proc_status_to_state};
use super::order::{
    Advanced, GState, MAY_HAVE, MState, MUST_HAVE, MUST_NOT_HAVE, Ordering, PState, RangeState,
    SchedCtx, SchedReqs, SeqCounter, Step, USER_GO_REQS, broken, make_seq, set_extra, validate_ctx,
};
use super::spec::{self, GoStatus, ProcStatus};

impl Ordering {
    /// order.go: advanceProcStatus, a P's status at the start of a generation.
    pub(crate) fn advance_proc_status(&mut self, s: Step<'_>) -> Advanced {
        let Step(ev, evt, generation, mut cur) = s;
        let pid = ev.args[0] as ProcID;
        // Go converts to the 8-bit ProcStatus first, and checks that.
        let status = ProcStatus::from_arg(ev.args[1]);
        let Some(mut old_state) = proc_status_to_state(u64::from(status.0)) else {
            return Err(broken(format!(
                "invalid status for proc {pid}: {}",
                status.0
            )));
        };
        if let Some(s) = self.p_states.get_mut(&pid) {
            if status == spec::PROC_SYSCALL_ABANDONED && s.status == spec::PROC_SYSCALL {
                // A special case of ProcSyscall: a potential loss of information, but being
                // in ProcSyscall already, nothing relevant was lost. Promote the status.
                old_state = ProcState::Running;
                ev.args[1] = u64::from(spec::PROC_SYSCALL.0);
            } else if status == spec::PROC_SYSCALL_ABANDONED
                && s.status == spec::PROC_SYSCALL_ABANDONED
            {
                // Passing through ProcSyscallAbandoned: nothing to promote. The M this P was
                // with is lost; it appears as idle in the API.
                old_state = ProcState::Idle;
                ev.args[1] = u64::from(spec::PROC_SYSCALL_ABANDONED.0);
            } else if s.status != status {
                return Err(broken(format!(
                    "inconsistent status for proc {pid}: old {} vs. new {status}",
                    s.status
                )));
            }
            s.seq = make_seq(generation, 0); // Reset seq.
        } else {
            self.p_states.insert(
                pid,
                PState {
                    status,
                    seq: make_seq(generation, 0),
                    range_state: RangeState::default(),
                },
            );
            old_state = if generation == self.initial_gen {
                ProcState::Undetermined
            } else {
                ProcState::NotExist
            };
        }
        // Smuggle in the old state for StateTransition.
        set_extra(ev, 0, old_state as u64);

        // Bind the proc to the new context, if it's running.
        let new_ctx = if status == spec::PROC_RUNNING || status == spec::PROC_SYSCALL {
            cur.with_p(pid)
        } else {
            cur
        };
        // Advancing through ProcSyscallAbandoned with a Running old state means it was
        // promoted to ProcSyscall; but the P is about to be stolen, and its status was very
        // likely not emitted by the thread it is bound to. Running -> Running is binding, so
        // the event must be emitted in the context the P is bound to: find it.
        if status == spec::PROC_SYSCALL_ABANDONED && old_state == ProcState::Running {
            // N.B. This is slow but it should be fairly rare.
            let mut found = false;
            for (&mid, ms) in &self.m_states {
                if ms.p == pid {
                    cur.m = mid;
                    cur.p = pid;
                    cur.g = ms.g;
                    found = true;
                }
            }
            if !found {
                return Err(broken(format!(
                    "failed to find sched context for proc {pid} that's about to be stolen"
                )));
            }
        }
        self.accept(evt, cur, ev, new_ctx)
    }

    /// order.go: advanceProcStart.
    pub(crate) fn advance_proc_start(&mut self, s: Step<'_>) -> Advanced {
        let Step(ev, evt, generation, cur) = s;
        let pid = ev.args[0] as ProcID;
        let seq = make_seq(generation, ev.args[1]);
        // Try to advance. This may fail on sequencing, because the P's status wasn't emitted
        // yet, or because this M has a P and is in a syscall whose P steal wasn't seen yet:
        // none of those can be told to be bad.
        let Some(state) = self.p_states.get_mut(&pid) else {
            return Ok(None);
        };
        if state.status != spec::PROC_IDLE || !seq.succeeds(state.seq) || cur.p != NO_PROC {
            return Ok(None);
        }
        // We can advance this P. Check some invariants. We might have a goroutine if a
        // goroutine is exiting a syscall.
        validate_ctx(cur, SchedReqs::new(MUST_HAVE, MUST_NOT_HAVE, MAY_HAVE))?;
        state.status = spec::PROC_RUNNING;
        state.seq = seq;
        self.accept(evt, cur, ev, cur.with_p(pid))
    }

    /// order.go: advanceProcStop. A P stopped by the M that started it (it is bound to
    /// it), so this always advances and needs no sequence number; ProcSteal is the other way.
    pub(crate) fn advance_proc_stop(&mut self, s: Step<'_>) -> Advanced {
        let Step(ev, evt, _, cur) = s;
        let name = self.ev_name(ev.typ);
        let Some(state) = self.p_states.get_mut(&cur.p) else {
            return Err(broken(format!(
                "event {name} for proc ({}) that doesn't exist",
                cur.p
            )));
        };
        if state.status != spec::PROC_RUNNING && state.status != spec::PROC_SYSCALL {
            return Err(broken(format!(
                "{name} event for proc that's not {} or {}",
                spec::PROC_RUNNING,
                spec::PROC_SYSCALL
            )));
        }
        validate_ctx(cur, SchedReqs::new(MUST_HAVE, MUST_HAVE, MAY_HAVE))?;
        state.status = spec::PROC_IDLE;
        self.accept(evt, cur, ev, cur.with_p(NO_PROC))
    }

    /// order.go: advanceProcSteal, a P taken from a thread in a syscall.
    pub(crate) fn advance_proc_steal(&mut self, s: Step<'_>) -> Advanced {
        let Step(ev, evt, generation, cur) = s;
        let pid = ev.args[0] as ProcID;
        let seq = make_seq(generation, ev.args[1]);
        let Some(state) = self.p_states.get_mut(&pid) else {
            return Ok(None);
        };
        if (state.status != spec::PROC_SYSCALL && state.status != spec::PROC_SYSCALL_ABANDONED)
            || !seq.succeeds(state.seq)
        {
            // Can't tell whether this is bad: it may come before the P's status, or before
            // the right point in the trace.
            return Ok(None);
        }
        // We can advance this P. Check some invariants.
        validate_ctx(cur, SchedReqs::new(MUST_HAVE, MAY_HAVE, MAY_HAVE))?;
        // Smuggle in the P state that let us advance, so that the event reads as Idle -> Idle
        // rather than Running -> Idle: ProcRunning is binding, but this M may have a P
        // already, and can't bind another. This P is about to go idle anyway.
        let old_status = state.status;
        set_extra(ev, 0, u64::from(old_status.0));

        // Update the P's status and sequence number.
        state.status = spec::PROC_IDLE;
        state.seq = seq;

        // If we've lost information then don't try to do anything with the M. It may have
        // moved on and we can't be sure.
        if old_status == spec::PROC_SYSCALL_ABANDONED {
            return self.accept(evt, cur, ev, cur);
        }

        // Validate that the M we're stealing from is what we expect.
        let mid = ev.args[2] as ThreadID; // The M we're stealing from.
        if mid == cur.m {
            // We're stealing from ourselves. This behaves like a ProcStop.
            if cur.p != pid {
                return Err(broken(format!(
                    "tried to self-steal proc {pid} (thread {mid}), but got proc {} instead",
                    cur.p
                )));
            }
            return self.accept(evt, cur, ev, cur.with_p(NO_PROC));
        }

        // We're stealing from some other M.
        let Some(m_state) = self.m_states.get_mut(&mid) else {
            return Err(broken(format!("stole proc from non-existent thread {mid}")));
        };
        // Make sure we're actually stealing the right P.
        if m_state.p != pid {
            return Err(broken(format!(
                "tried to steal proc {pid} from thread {mid}, but got proc {} instead",
                m_state.p
            )));
        }
        // Tell the M it has no P so it can proceed. Safe: the P was in a syscall and the
        // other M must be trying to get out of it; its GoSyscallEndBlocked cannot advance
        // until it loses its P.
        m_state.p = NO_PROC;
        self.accept(evt, cur, ev, cur)
    }

    /// order.go: advanceGoStatus, a goroutine's status at the start of a generation.
    pub(crate) fn advance_go_status(&mut self, s: Step<'_>) -> Advanced {
        let Step(ev, evt, generation, mut cur) = s;
        let gid = ev.args[0] as GoID;
        let mid = ev.args[1] as ThreadID;
        // Go converts to the 8-bit GoStatus first, and checks that.
        let status = GoStatus::from_arg(ev.args[2]);
        let Some(mut old_state) = go_status_to_state(u64::from(status.0)) else {
            return Err(broken(format!(
                "invalid status for goroutine {gid}: {}",
                status.0
            )));
        };
        if let Some(s) = self.g_states.get_mut(&gid) {
            if s.status != status {
                return Err(broken(format!(
                    "inconsistent status for goroutine {gid}: old {} vs. new {status}",
                    s.status
                )));
            }
            s.seq = make_seq(generation, 0); // Reset seq.
        } else if generation == self.initial_gen {
            // Set the state.
            self.g_states
                .insert(gid, GState::new(gid, status, make_seq(generation, 0)));
            old_state = GoState::Undetermined;
        } else {
            return Err(broken(format!(
                "found goroutine status for new goroutine after the first generation: \
                 id={gid} status={status}"
            )));
        }
        // Smuggle in the old state for StateTransition.
        ev.args[2] = (old_state as u64) << 32 | u64::from(status.0);

        let mut new_ctx = cur;
        if status == spec::GO_RUNNING {
            // Bind the goroutine to the new context, since it's running.
            new_ctx.g = gid;
        } else if status == spec::GO_SYSCALL {
            if mid == NO_THREAD {
                return Err(broken(format!(
                    "found goroutine {gid} in syscall without a thread"
                )));
            }
            // Is the syscall on this thread? If so, bind it to the context. Otherwise this is
            // a G sitting in a syscall on another M; validate that M.
            if mid == cur.m {
                if generation != self.initial_gen && cur.g != gid {
                    // Past the first generation the binding must have been seen already
                    // (even a G blocked in a syscall since trace start had a GoStatus that
                    // bound it to an M).
                    return Err(broken(format!(
                        "inconsistent thread for syscalling goroutine {gid}: thread has \
                         goroutine {}",
                        cur.g
                    )));
                }
                new_ctx.g = gid;
            } else {
                // A thread and goroutine blocked in a syscall for the whole generation. It
                // can't have a P: the runtime takes a P back from every thread to trace all
                // Ps at the start of a generation.
                if let Some(ms) = self.m_states.get(&mid) {
                    // This M has been seen, so this goroutine must have been seen going into
                    // a syscall on it.
                    if ms.g != gid {
                        return Err(broken(format!(
                            "inconsistent thread for syscalling goroutine {gid}: thread has \
                             goroutine {}",
                            ms.g
                        )));
                    }
                    // Just a Syscall -> Syscall event, which must appear as having the G
                    // currently bound to this M.
                    cur.g = ms.g;
                } else {
                    // The M hasn't been seen: this goroutine has been sitting in a syscall
                    // on it. Create a state for it. cur.g stays: this is the binding event
                    // (and cur is the "before" state).
                    self.m_states.insert(mid, MState { g: gid, p: NO_PROC });
                }
                // Update the current context to the M we're talking about.
                cur.m = mid;
            }
        }
        self.accept(evt, cur, ev, new_ctx)
    }

    /// order.go: advanceGoCreate (also GoCreateBlocked). Goroutines are created on a
    /// running P, by a running goroutine or not.
    pub(crate) fn advance_go_create(&mut self, s: Step<'_>) -> Advanced {
        let Step(ev, evt, generation, cur) = s;
        validate_ctx(cur, SchedReqs::new(MUST_HAVE, MUST_HAVE, MAY_HAVE))?;
        // If we have a goroutine, it must be running.
        if let Some(state) = self.g_states.get(&cur.g)
            && state.status != spec::GO_RUNNING
        {
            return Err(broken(format!(
                "{} event for goroutine that's not {}",
                self.ev_name(ev.typ),
                GoState::Running.as_str()
            )));
        }
        // This goroutine created another. Add a state for it.
        let newgid = ev.args[0] as GoID;
        if self.g_states.contains_key(&newgid) {
            return Err(broken(format!(
                "tried to create goroutine ({newgid}) that already exists"
            )));
        }
        let status = if ev.typ == spec::EV_GO_CREATE_BLOCKED {
            spec::GO_WAITING
        } else {
            spec::GO_RUNNABLE
        };
        self.g_states
            .insert(newgid, GState::new(newgid, status, make_seq(generation, 0)));
        self.accept(evt, cur, ev, cur)
    }

    /// The running goroutine's state, checked as the syscall and stop handlers do: it must
    /// exist and be in `want` (`want_name` in Go's error message, not always `want`'s name).
    fn current_g_in(
        &mut self,
        ev: &BaseEvent,
        cur: SchedCtx,
        (want, want_name): (GoStatus, GoState),
    ) -> Result<&mut GState, TraceError> {
        let ver = self.trace_ver;
        let Some(state) = self.g_states.get_mut(&cur.g) else {
            return Err(broken(format!(
                "event {} for goroutine ({}) that doesn't exist",
                ver.event_name(ev.typ),
                cur.g
            )));
        };
        if state.status != want {
            return Err(broken(format!(
                "{} event for goroutine that's not {}",
                ver.event_name(ev.typ),
                want_name.as_str()
            )));
        }
        Ok(state)
    }

    /// The running goroutine's transition in the syscall and stop handlers: checked as
    /// [`Ordering::current_g_in`] does, it moves to `to`, or, if `to` is None, is forgotten
    /// (it is exiting itself).
    fn move_current_g(
        &mut self,
        ev: &BaseEvent,
        cur: SchedCtx,
        want: (GoStatus, GoState),
        to: Option<GoStatus>,
    ) -> Result<(), TraceError> {
        let state = self.current_g_in(ev, cur, want)?;
        match to {
            Some(to) => state.status = to,
            None => {
                self.g_states.remove(&cur.g);
            }
        }
        Ok(())
    }

    /// The state of goroutine `gid` if an event with sequence number `seq` that needs it in
    /// `want` can advance now.
    fn g_ready(&mut self, gid: GoID, want: GoStatus, seq: SeqCounter) -> Option<&mut GState> {
        self.g_states
            .get_mut(&gid)
            .filter(|state| state.status == want && seq.succeeds(state.seq))
    }

    /// order.go: advanceGoStopExec (GoDestroy, GoStop, GoBlock): events of the running
    /// goroutine of some thread, always advanceable since it is bound to its M.
    pub(crate) fn advance_go_stop_exec(&mut self, s: Step<'_>) -> Advanced {
        let Step(ev, evt, _, cur) = s;
        validate_ctx(cur, USER_GO_REQS)?;
        // Handle each case slightly differently; they share preconditions.
        let to = match ev.typ {
            // This goroutine is exiting itself.
            spec::EV_GO_DESTROY => None,
            // Goroutine stopped (yielded). It's runnable but not running on this M.
            spec::EV_GO_STOP => Some(spec::GO_RUNNABLE),
            // Goroutine blocked (EV_GO_BLOCK, the only other event dispatched here). It's
            // waiting now and not running on this M.
            _ => Some(spec::GO_WAITING),
        };
        self.move_current_g(ev, cur, RUNNING, to)?;
        self.accept(evt, cur, ev, cur.with_g(NO_GOROUTINE))
    }

    /// order.go: advanceGoStart.
    pub(crate) fn advance_go_start(&mut self, s: Step<'_>) -> Advanced {
        let Step(ev, evt, generation, cur) = s;
        let gid = ev.args[0] as GoID;
        let seq = make_seq(generation, ev.args[1]);
        let Some(state) = self.g_ready(gid, spec::GO_RUNNABLE, seq) else {
            // Can't tell whether this is bad: it may come before the goroutine's creation or
            // status, or before the right point in the trace.
            return Ok(None);
        };
        // We can advance this goroutine. Check some invariants.
        validate_ctx(cur, SchedReqs::new(MUST_HAVE, MUST_HAVE, MUST_NOT_HAVE))?;
        state.status = spec::GO_RUNNING;
        state.seq = seq;
        self.accept(evt, cur, ev, cur.with_g(gid))
    }

    /// order.go: advanceGoUnblock. Names the goroutine to unblock, not the current one.
    pub(crate) fn advance_go_unblock(&mut self, s: Step<'_>) -> Advanced {
        let Step(ev, evt, generation, cur) = s;
        let seq = make_seq(generation, ev.args[1]);
        let Some(state) = self.g_ready(ev.args[0] as GoID, spec::GO_WAITING, seq) else {
            return Ok(None);
        };
        state.status = spec::GO_RUNNABLE;
        state.seq = seq;
        // N.B. No context to validate: basically anything can unblock a goroutine (e.g.
        // sysmon).
        self.accept(evt, cur, ev, cur)
    }

    /// order.go: advanceGoSwitch (GoSwitch, GoSwitchDestroy): a trio of events, the unblock
    /// of the goroutine switched to, the block or destroy of the current one, and the start
    /// of the next. It acts as a GoStart, so it needs the sequence numbers to line up.
    pub(crate) fn advance_go_switch(&mut self, s: Step<'_>) -> Advanced {
        let Step(ev, evt, generation, cur) = s;
        // The current goroutine on the thread must be actively running.
        validate_ctx(cur, USER_GO_REQS)?;
        self.current_g_in(ev, cur, RUNNING)?;
        let nextg = ev.args[0] as GoID;
        let seq = make_seq(generation, ev.args[1]); // seq is for nextg, not cur.g.
        if self.g_ready(nextg, spec::GO_WAITING, seq).is_none() {
            // Can't tell whether this is bad (see GoStart).
            return Ok(None);
        }
        self.push(evt, cur, ev);

        // Update the state of the executing goroutine and emit an event for it (GoSwitch and
        // GoSwitchDestroy are read as GoUnblock events for nextg).
        match ev.typ {
            spec::EV_GO_SWITCH => {
                // Goroutine blocked. It's waiting now and not running on this M.
                if let Some(s) = self.g_states.get_mut(&cur.g) {
                    s.status = spec::GO_WAITING;
                }
                // Emit a GoBlock event (Go: "TODO(mknyszek): Emit a reason.").
                let ev = Event::make(evt, cur, spec::EV_GO_BLOCK, ev.time, &[0, 0]);
                self.queue.push_back(ev);
            }
            spec::EV_GO_SWITCH_DESTROY => {
                // This goroutine is exiting itself.
                self.g_states.remove(&cur.g);
                // Emit a GoDestroy event.
                self.queue
                    .push_back(Event::make(evt, cur, spec::EV_GO_DESTROY, ev.time, &[]));
            }
            _ => {}
        }
        // Update the state of the next goroutine.
        if let Some(next) = self.g_states.get_mut(&nextg) {
            next.status = spec::GO_RUNNING;
            next.seq = seq;
        }

        // Queue an event for the next goroutine starting to run.
        let start = Event::make(
            evt,
            cur.with_g(NO_GOROUTINE),
            spec::EV_GO_START,
            ev.time,
            &[nextg as u64, ev.args[1]],
        );
        self.queue.push_back(start);
        Ok(Some(cur.with_g(nextg)))
    }

    /// order.go: advanceGoSyscallBegin. Needs a running goroutine with a P; always
    /// advanceable.
    pub(crate) fn advance_go_syscall_begin(&mut self, s: Step<'_>) -> Advanced {
        let Step(ev, evt, generation, cur) = s;
        validate_ctx(cur, USER_GO_REQS)?;
        // Goroutine entered a syscall. It's still running on this P and M.
        self.move_current_g(ev, cur, RUNNING, Some(spec::GO_SYSCALL))?;
        let ver = self.trace_ver;
        let p_state = self.proc_found_during(cur.p, ev.typ)?;
        p_state.status = spec::PROC_SYSCALL;
        // Validate the P sequence number on the event and advance it. A goroutine event has
        // one to model P stealing: without it, which syscall a ProcSteal steals from can be
        // ambiguous with broken timestamps (Go's go122-syscall-steal-proc-ambiguous test).
        // It only disambiguates, so it is enforced here: this is a running P.
        let p_seq = make_seq(generation, ev.args[0]);
        if !p_seq.succeeds(p_state.seq) {
            return Err(broken(format!(
                "failed to advance {}: can't make sequence: {} -> {p_seq}",
                ver.event_name(ev.typ),
                p_state.seq
            )));
        }
        p_state.seq = p_seq;
        self.accept(evt, cur, ev, cur)
    }

    /// order.go: advanceGoSyscallEnd. Always advanceable: it happens on the thread of the
    /// syscall's begin, which the goroutine can't leave until it's done.
    pub(crate) fn advance_go_syscall_end(&mut self, s: Step<'_>) -> Advanced {
        let Step(ev, evt, _, cur) = s;
        validate_ctx(cur, USER_GO_REQS)?;
        // (Go's message names Running here although the state checked is Syscall.)
        self.move_current_g(ev, cur, SYSCALL_AS_RUNNING, Some(spec::GO_RUNNING))?;

        // Transfer the P back to running from syscall.
        let p_state = self.proc_found_during(cur.p, ev.typ)?;
        if p_state.status != spec::PROC_SYSCALL {
            return Err(broken(format!(
                "expected proc {} in state {}, but got {} instead",
                cur.p,
                spec::PROC_SYSCALL,
                p_state.status
            )));
        }
        p_state.status = spec::PROC_RUNNING;
        self.accept(evt, cur, ev, cur)
    }

    /// order.go: advanceGoSyscallEndBlocked. Advanceable once its P is out of the syscall
    /// state (stopped or stolen; having no P, or a new P, is fine too): while the P is still
    /// in ProcSyscall, it is known to be lost later, so don't advance until that happens.
    pub(crate) fn advance_go_syscall_end_blocked(&mut self, s: Step<'_>) -> Advanced {
        let Step(ev, evt, _, cur) = s;
        if cur.p != NO_PROC && self.proc_found_during(cur.p, ev.typ)?.status == spec::PROC_SYSCALL {
            return Ok(None);
        }
        // We may have a P here if we ProcStart before this event.
        validate_ctx(cur, SchedReqs::new(MUST_HAVE, MAY_HAVE, MUST_HAVE))?;
        self.move_current_g(ev, cur, SYSCALL_AS_RUNNING, Some(spec::GO_RUNNABLE))?;
        self.accept(evt, cur, ev, cur.with_g(NO_GOROUTINE))
    }

    /// order.go: advanceGoCreateSyscall, a goroutine appearing out of a cgo callback, created
    /// in the syscall state.
    pub(crate) fn advance_go_create_syscall(&mut self, s: Step<'_>) -> Advanced {
        let Step(ev, evt, generation, cur) = s;
        validate_ctx(cur, SchedReqs::new(MUST_HAVE, MAY_HAVE, MUST_NOT_HAVE))?;
        // This goroutine is effectively being created. Add a state for it.
        let newgid = ev.args[0] as GoID;
        if self.g_states.contains_key(&newgid) {
            return Err(broken(format!(
                "tried to create goroutine ({newgid}) in syscall that already exists"
            )));
        }
        self.g_states.insert(
            newgid,
            GState::new(newgid, spec::GO_SYSCALL, make_seq(generation, 0)),
        );
        // Goroutine is executing. Bind it to the context.
        self.accept(evt, cur, ev, cur.with_g(newgid))
    }

    /// order.go: advanceGoDestroySyscall, a cgo-callback goroutine disappearing (the callback
    /// ended, or its C thread is going away). Treated as losing the P too: the thread ID may
    /// be reused, and a new M with the same ID could even try to steal this P from itself.
    /// The runtime makes sure a GoCreateSyscall is followed by events reacquiring a P. There
    /// may be a P here, not released eagerly, which may get stolen back later (or never).
    pub(crate) fn advance_go_destroy_syscall(&mut self, s: Step<'_>) -> Advanced {
        let Step(ev, evt, _, cur) = s;
        validate_ctx(cur, SchedReqs::new(MUST_HAVE, MAY_HAVE, MUST_HAVE))?;
        // Check to make sure the goroutine exists in the right state. This goroutine is
        // exiting itself.
        self.move_current_g(ev, cur, (spec::GO_SYSCALL, GoState::Syscall), None)?;
        let mut new_ctx = cur.with_g(NO_GOROUTINE);

        // If we have a proc, then we're dissociating from it now.
        if cur.p != NO_PROC {
            let name = self.ev_name(ev.typ);
            let Some(p_state) = self.p_states.get_mut(&cur.p) else {
                return Err(broken(format!(
                    "found invalid proc {} during {name}",
                    cur.p
                )));
            };
            if p_state.status != spec::PROC_SYSCALL {
                return Err(broken(format!(
                    "proc {} in unexpected state {} during {name}",
                    cur.p, p_state.status
                )));
            }
            // See Go's go122-create-syscall-reuse-thread-id test case.
            p_state.status = spec::PROC_SYSCALL_ABANDONED;
            new_ctx.p = NO_PROC;

            // Queue an extra self-ProcSteal event.
            let mut extra = Event::make(evt, cur, spec::EV_PROC_STEAL, ev.time, &[cur.p as u64]);
            set_extra(&mut extra.base, 0, u64::from(spec::PROC_SYSCALL.0));
            self.queue.push_back(extra);
        }
        self.accept(evt, cur, ev, new_ctx)
    }
}

/// What the stop, switch and syscall-begin handlers need of the running goroutine: Running.
const RUNNING: (GoStatus, GoState) = (spec::GO_RUNNING, GoState::Running);
/// What the syscall-end handlers need: Syscall, though Go's error message says Running.
const SYSCALL_AS_RUNNING: (GoStatus, GoState) = (spec::GO_SYSCALL, GoState::Running);
