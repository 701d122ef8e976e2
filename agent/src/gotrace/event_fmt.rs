//! The text forms of events, byte for byte those of Go 1.27.3's `internal/trace`:
//! `Event.String()` (event.go), `Stack.String()`/`printStack`, `Value.String()` (value.go) and
//! the `String()` methods of resources.go. `go tool trace -d=parsed` prints one
//! `ev.String()` per line (`fmt.Println`), which is what [`super::reader::dump`] writes.

use std::fmt::{self, Display, Formatter, Write as _};

use super::event::{
    Event, EventKind, Frame, GoState, ProcState, ResourceId, ResourceKind, Stack, Value,
};
use super::gofmt::{format_rfc3339_nano, write_go_quoted};

/// `%q`.
struct Q<'a>(&'a str);

impl Display for Q<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write_go_quoted(f, self.0.as_bytes())
    }
}

/// The `String()` methods of EventKind, GoState, ProcState and ResourceKind: their names
/// (`as_str`).
macro_rules! display_as_str {
    ($($t:ty),*) => {$(
        impl Display for $t {
            fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}
display_as_str!(EventKind, GoState, ProcState, ResourceKind);

/// resources.go: ResourceID.String, "None" or e.g. "Goroutine(7)".
impl Display for ResourceId {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if self.kind == ResourceKind::None {
            return f.write_str(self.kind.as_str());
        }
        write!(f, "{}({})", self.kind, self.raw())
    }
}

/// value.go: Value.String, the string itself for a string, "Value{Uint64(7)}" otherwise.
impl Display for Value {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Value::String(s) => f.write_str(s),
            Value::Uint64(v) => write!(f, "Value{{Uint64({v})}}"),
            Value::Bad => f.write_str("Value{Bad}"),
        }
    }
}

/// event.go: Stack.String, each frame as "func @ 0xpc\n\tfile:line\n".
impl Display for Stack {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        print_stack(f, "", self.frames())
    }
}

/// event.go: printStack.
fn print_stack<'a>(
    w: &mut impl fmt::Write,
    prefix: &str,
    frames: impl Iterator<Item = Frame<'a>>,
) -> fmt::Result {
    for fr in frames {
        write!(
            w,
            "{prefix}{} @ {:#x}\n{prefix}\t{}:{}\n",
            fr.func, fr.pc, fr.file, fr.line
        )?;
    }
    Ok(())
}

/// event.go: Event.String. Multi-line when the event has stacks; no trailing newline unless
/// it ends with a stack (as in Go, whose `Println` then adds a blank line).
impl Display for Event {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "M={} P={} G={}",
            self.thread(),
            self.proc(),
            self.goroutine()
        )?;
        let kind = self.kind();
        write!(f, " {kind} Time={}", self.time())?;
        // Kind-specific fields.
        match kind {
            EventKind::Metric => {
                let m = self.metric();
                write!(f, " Name={} Value={}", Q(m.name), m.value)?;
            }
            EventKind::Label => {
                let l = self.label();
                write!(f, " Label={} Resource={}", Q(&l.label), l.resource)?;
            }
            EventKind::RangeBegin | EventKind::RangeActive | EventKind::RangeEnd => {
                let r = self.range();
                write!(f, " Name={} Scope={}", Q(&r.name), r.scope)?;
                if kind == EventKind::RangeEnd {
                    f.write_str(" Attributes=[")?;
                    for (i, attr) in self.range_attributes().iter().enumerate() {
                        if i != 0 {
                            f.write_char(' ')?;
                        }
                        write!(f, "{}={}", Q(attr.name), attr.value)?;
                    }
                    f.write_char(']')?;
                }
            }
            EventKind::TaskBegin | EventKind::TaskEnd => {
                let t = self.task();
                write!(f, " ID={} Parent={} Type={}", t.id, t.parent, Q(&t.typ))?;
            }
            EventKind::RegionBegin | EventKind::RegionEnd => {
                let r = self.region();
                write!(f, " Task={} Type={}", r.task, Q(&r.typ))?;
            }
            EventKind::Log => {
                let l = self.log();
                write!(
                    f,
                    " Task={} Category={} Message={}",
                    l.task,
                    Q(&l.category),
                    Q(&l.message)
                )?;
            }
            EventKind::StateTransition => {
                let s = self.state_transition();
                match s.resource.kind {
                    ResourceKind::Goroutine => {
                        let (old, new) = s.goroutine();
                        write!(f, " GoID={} {old}->{new}", s.resource.goroutine())?;
                    }
                    ResourceKind::Proc => {
                        let (old, new) = s.proc();
                        write!(f, " ProcID={} {old}->{new}", s.resource.proc())?;
                    }
                    _ => {}
                }
                write!(f, " Reason={}", Q(&s.reason))?;
                if !s.stack.is_none() {
                    f.write_str("\nTransitionStack=\n")?;
                    print_stack(f, "\t", s.stack.frames())?;
                }
            }
            EventKind::Experimental => {
                let r = self.experimental();
                write!(f, " Name={} Args=[", r.name)?;
                for (i, arg) in r.args.iter().enumerate() {
                    if i != 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{arg}={}", r.arg_value(i).unwrap_or_default())?;
                }
                f.write_char(']')?;
            }
            EventKind::Sync => {
                let s = self.sync();
                write!(f, " N={}", s.n)?;
                if let Some(cs) = s.clock_snapshot {
                    write!(
                        f,
                        " Trace={} Mono={} Wall={}",
                        cs.trace,
                        cs.mono,
                        format_rfc3339_nano(cs.wall.sec, cs.wall.nsec)
                    )?;
                }
            }
            EventKind::Bad | EventKind::StackSample => {}
        }
        let stk = self.stack();
        if !stk.is_none() {
            f.write_str("\nStack=\n")?;
            print_stack(f, "\t", stk.frames())?;
        }
        Ok(())
    }
}
