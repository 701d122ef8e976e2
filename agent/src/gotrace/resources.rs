//! Resources and their states, and trace values, ported from Go 1.27.3's
//! `internal/trace/resources.go` and `value.go`: goroutine and proc states, resource IDs and
//! state transitions. Re-exported by [`super::event`].

use super::base::{GoID, NO_GOROUTINE, NO_PROC, NO_THREAD, ProcID, ThreadID};
use super::event::Stack;

/// value.go: Value, a dynamically typed value from a trace.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Value {
    /// value.go: ValueBad.
    #[default]
    Bad,
    /// value.go: ValueUint64.
    Uint64(u64),
    /// value.go: ValueString.
    String(String),
}

/// resources.go: GoState, the state of a goroutine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum GoState {
    /// No information is known about the goroutine.
    #[default]
    Undetermined = 0,
    /// The goroutine does not exist.
    NotExist = 1,
    /// Runnable but not running.
    Runnable = 2,
    /// Running.
    Running = 3,
    /// Waiting on something to happen.
    Waiting = 4,
    /// In a system call.
    Syscall = 5,
}

impl GoState {
    /// The state for its numeric value (`GoState(x)` in Go).
    pub fn from_u8(x: u8) -> Option<GoState> {
        Some(match x {
            0 => GoState::Undetermined,
            1 => GoState::NotExist,
            2 => GoState::Runnable,
            3 => GoState::Running,
            4 => GoState::Waiting,
            5 => GoState::Syscall,
            _ => return None,
        })
    }

    /// GoState.Executing: the goroutine is bound to its thread.
    pub fn executing(self) -> bool {
        matches!(self, GoState::Running | GoState::Syscall)
    }

    /// GoState.String.
    pub fn as_str(self) -> &'static str {
        match self {
            GoState::Undetermined => "Undetermined",
            GoState::NotExist => "NotExist",
            GoState::Runnable => "Runnable",
            GoState::Running => "Running",
            GoState::Waiting => "Waiting",
            GoState::Syscall => "Syscall",
        }
    }
}

/// resources.go: ProcState, the state of a proc.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum ProcState {
    /// No information is known about the proc.
    #[default]
    Undetermined = 0,
    /// The proc does not exist.
    NotExist = 1,
    /// Running.
    Running = 2,
    /// Idle.
    Idle = 3,
}

impl ProcState {
    /// The state for its numeric value (`ProcState(x)` in Go).
    pub fn from_u8(x: u8) -> Option<ProcState> {
        Some(match x {
            0 => ProcState::Undetermined,
            1 => ProcState::NotExist,
            2 => ProcState::Running,
            3 => ProcState::Idle,
            _ => return None,
        })
    }

    /// ProcState.Executing: the proc is bound to its thread.
    pub fn executing(self) -> bool {
        self == ProcState::Running
    }

    /// ProcState.String.
    pub fn as_str(self) -> &'static str {
        match self {
            ProcState::Undetermined => "Undetermined",
            ProcState::NotExist => "NotExist",
            ProcState::Running => "Running",
            ProcState::Idle => "Idle",
        }
    }
}

/// resources.go: ResourceKind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ResourceKind {
    /// No resource.
    #[default]
    None,
    /// A goroutine.
    Goroutine,
    /// A proc.
    Proc,
    /// A thread.
    Thread,
}

impl ResourceKind {
    /// ResourceKind.String.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::None => "None",
            ResourceKind::Goroutine => "Goroutine",
            ResourceKind::Proc => "Proc",
            ResourceKind::Thread => "Thread",
        }
    }
}

/// resources.go: ResourceID, a goroutine, proc or thread ID, or no resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ResourceId {
    /// The kind of resource.
    pub kind: ResourceKind,
    id: i64,
}

impl ResourceId {
    /// MakeResourceID for a goroutine.
    pub fn goroutine_id(id: GoID) -> ResourceId {
        ResourceId {
            kind: ResourceKind::Goroutine,
            id,
        }
    }

    /// MakeResourceID for a proc.
    pub fn proc_id(id: ProcID) -> ResourceId {
        ResourceId {
            kind: ResourceKind::Proc,
            id,
        }
    }

    /// MakeResourceID for a thread.
    pub fn thread_id(id: ThreadID) -> ResourceId {
        ResourceId {
            kind: ResourceKind::Thread,
            id,
        }
    }

    /// ResourceID.Goroutine: the goroutine ID ([`NO_GOROUTINE`] if this is not a goroutine,
    /// where Go panics).
    pub fn goroutine(&self) -> GoID {
        if self.kind == ResourceKind::Goroutine {
            self.id
        } else {
            NO_GOROUTINE
        }
    }

    /// ResourceID.Proc: the proc ID ([`NO_PROC`] if this is not a proc).
    pub fn proc(&self) -> ProcID {
        if self.kind == ResourceKind::Proc {
            self.id
        } else {
            NO_PROC
        }
    }

    /// ResourceID.Thread: the thread ID ([`NO_THREAD`] if this is not a thread).
    pub fn thread(&self) -> ThreadID {
        if self.kind == ResourceKind::Thread {
            self.id
        } else {
            NO_THREAD
        }
    }

    /// The raw ID, whatever the kind.
    pub fn raw(&self) -> i64 {
        self.id
    }
}

/// resources.go: StateTransition, a goroutine or proc changing state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StateTransition {
    /// The resource changing state.
    pub resource: ResourceId,
    /// Why (e.g. "chan receive" for a goroutine blocking); may be empty.
    pub reason: String,
    /// The stack of the resource making the transition (e.g. where a goroutine blocked, or
    /// the start of a new goroutine), as distinct from the event's own stack.
    pub stack: Stack,
    old_state: u8,
    new_state: u8,
}

impl StateTransition {
    /// MakeGoStateTransition.
    pub fn make_go(id: GoID, from: GoState, to: GoState) -> StateTransition {
        StateTransition {
            resource: ResourceId::goroutine_id(id),
            old_state: from as u8,
            new_state: to as u8,
            ..StateTransition::default()
        }
    }

    /// MakeProcStateTransition.
    pub fn make_proc(id: ProcID, from: ProcState, to: ProcState) -> StateTransition {
        StateTransition {
            resource: ResourceId::proc_id(id),
            old_state: from as u8,
            new_state: to as u8,
            ..StateTransition::default()
        }
    }

    /// StateTransition.Goroutine: (from, to) for a goroutine transition (Undetermined for
    /// another resource, where Go panics).
    pub fn goroutine(&self) -> (GoState, GoState) {
        if self.resource.kind != ResourceKind::Goroutine {
            return (GoState::Undetermined, GoState::Undetermined);
        }
        (
            GoState::from_u8(self.old_state).unwrap_or_default(),
            GoState::from_u8(self.new_state).unwrap_or_default(),
        )
    }

    /// StateTransition.Proc: (from, to) for a proc transition.
    pub fn proc(&self) -> (ProcState, ProcState) {
        if self.resource.kind != ResourceKind::Proc {
            return (ProcState::Undetermined, ProcState::Undetermined);
        }
        (
            ProcState::from_u8(self.old_state).unwrap_or_default(),
            ProcState::from_u8(self.new_state).unwrap_or_default(),
        )
    }
}
