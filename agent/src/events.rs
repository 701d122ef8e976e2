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
                park_pc: ev.caller_pc,
                tid: ev.tid,
                gopc: ev.gopc,
                startpc: ev.startpc,
                parent_goid: ev.parent_goid,
                n_wait_chans: ev.n_chans,
                ..Goroutine::default()
            };
            let n = (ev.n_chans as usize).min(ev.chans.len());
            g.wait_chans = ev.chans[..n].iter().copied().filter(|&c| c != 0).collect();
            g.sema = (ev.sema_kind != 0).then_some((ev.sema_addr, ev.sema_kind));
            park_json(ctx, &g, ev.ts_ns, "uprobe")
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
    write_line(out, &line)
}

/// A park as JSON. `source` says which mode saw it: "uprobe" (precise: `ts_ns` is the park
/// itself) or "scan" (scan mode: `ts_ns` is the first scan that saw the wait, or the runtime's
/// `g.waitsince` if earlier; `parked_in` and `tid` are unknown).
fn park_json(ctx: &Context<'_>, g: &Goroutine, ts_ns: u64, source: &str) -> serde_json::Value {
    let (bin, bias) = (ctx.bin, ctx.bias);
    let func = |pc: u64| {
        (pc != 0)
            .then(|| bin.func_name(pc.wrapping_sub(bias)))
            .flatten()
    };
    let (kind, obj) = wait_object(bin, g);
    json!({
        "ts_ns": ts_ns, "event": "park", "goid": g.goid, "tid": g.tid,
        "wait_reason": bin.wait_reason(g.reason), "wait_reason_code": g.reason,
        "object_kind": kind, "object": hex(obj),
        "wait_chans": g.wait_chans.iter().map(|&c| hex(c)).collect::<Vec<_>>(),
        "n_wait_chans": g.n_wait_chans,
        "parked_in": func(g.park_pc),
        "start_function": func(g.startpc), "created_at": func(g.gopc),
        "parent_goid": g.parent_goid,
        "source": source,
    })
}

/// Scan mode: a goroutine the scans now see blocked (`g.parked_at_ns` is set).
pub fn write_scan_park(
    out: &mut dyn Write,
    ctx: &Context<'_>,
    g: &Goroutine,
) -> std::io::Result<()> {
    let line = park_json(ctx, g, g.parked_at_ns.unwrap_or(0), "scan");
    write_line(out, &line)
}

/// Scan mode: a blocked goroutine that a scan at `ts_ns` no longer saw waiting the same way.
/// Who woke it is unknown to a scan (`waker_goid` is null).
pub fn write_scan_ready(out: &mut dyn Write, goid: u64, ts_ns: u64) -> std::io::Result<()> {
    let line = json!({
        "ts_ns": ts_ns, "event": "ready", "goid": goid, "waker_goid": null, "source": "scan",
    });
    write_line(out, &line)
}

/// Writes one NDJSON line of the event stream.
pub fn write_line(out: &mut dyn Write, line: &serde_json::Value) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, line)?;
    out.write_all(b"\n")
}
