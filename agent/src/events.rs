//! The NDJSON event stream (`--events`): one JSON object per probe event, as it arrives.

use std::io::Write;

use probes_ebpf::{EventKind, GoEvent};
use serde_json::json;

use crate::model::Goroutine;
use crate::summary::{Context, hex, wait_object};

/// Writes one event as a line of JSON.
pub fn write_event(out: &mut dyn Write, ctx: &Context<'_>, ev: &GoEvent) -> std::io::Result<()> {
    let (bin, bias) = (ctx.bin, ctx.bias);
    let func = |pc: u64| bin.func_name(pc.wrapping_sub(bias));
    let line = match EventKind::try_from(ev.kind) {
        Ok(EventKind::Park) => {
            let mut g = Goroutine {
                goid: ev.goid,
                reason: ev.reason,
                wait_obj: ev.obj,
                ..Goroutine::default()
            };
            let n = (ev.n_chans as usize).min(ev.chans.len());
            g.wait_chans = ev.chans[..n].iter().copied().filter(|&c| c != 0).collect();
            g.sema = (ev.sema_kind != 0).then_some((ev.sema_addr, ev.sema_kind));
            let (kind, obj) = wait_object(bin, &g);
            json!({
                "ts_ns": ev.ts_ns, "event": "park", "goid": ev.goid, "tid": ev.tid,
                "wait_reason": bin.wait_reason(ev.reason), "wait_reason_code": ev.reason,
                "object_kind": kind, "object": hex(obj),
                "wait_chans": g.wait_chans.iter().map(|&c| hex(c)).collect::<Vec<_>>(),
                "n_wait_chans": ev.n_chans,
                "parked_in": func(ev.caller_pc),
                "start_function": func(ev.startpc), "created_at": func(ev.gopc),
                "parent_goid": ev.parent_goid,
                "source": "uprobe",
            })
        }
        Ok(EventKind::Ready) => json!({
            "ts_ns": ev.ts_ns, "event": "ready", "goid": ev.goid, "tid": ev.tid,
            "waker_goid": ev.peer_goid, "source": "uprobe",
        }),
        Ok(EventKind::Create) => json!({
            "ts_ns": ev.ts_ns, "event": "create", "parent_goid": ev.parent_goid, "tid": ev.tid,
            "created_at": func(ev.gopc),
            "created_at_line": bin.source_line(ev.gopc.wrapping_sub(bias).wrapping_sub(1)),
            "start_function": func(ev.startpc), "source": "uprobe",
        }),
        Ok(EventKind::Exit) => json!({
            "ts_ns": ev.ts_ns, "event": "exit", "goid": ev.goid, "tid": ev.tid, "source": "uprobe",
        }),
        Err(kind) => json!({ "ts_ns": ev.ts_ns, "event": "unknown", "kind": kind }),
    };
    serde_json::to_writer(&mut *out, &line)?;
    out.write_all(b"\n")
}
