//! From the return addresses the makechan probe read to the `make(chan …)` line: the first
//! frame, innermost first and inlined frames expanded, that is not one of the runtime's or
//! reflect's ways into `runtime.makechan`.

use probes_ebpf::ChanSite;

use super::MadeAt;
use crate::report::Text;
use crate::summary::Context;
use crate::unwind::{Innermost, StackFrame, symbolize_stack};

/// Functions between a channel's maker and `runtime.makechan` (src/runtime/chan.go:
/// `makechan64` for a size wider than `int`; `reflect_makechan`, linknamed `reflect.makechan`,
/// which `reflect.MakeChan` calls in src/reflect/value.go).
const WRAPPERS: [&str; 5] = [
    "runtime.makechan",
    "runtime.makechan64",
    "runtime.reflect_makechan",
    "reflect.makechan",
    "reflect.MakeChan",
];

/// Whether `function` is a way into makechan rather than the code that made the channel.
pub fn is_wrapper(function: &str) -> bool {
    WRAPPERS.contains(&function)
}

/// The frame that made the channel, from the symbolized frames of each return address in
/// order ([RSP], [RBP+8], [[RBP]+8]): the first frame that is no wrapper. A return address with
/// no frames (unknown to the pclntab) ends the search: what lies above it is not trusted.
pub fn maker(frames_per_pc: &[Vec<StackFrame>]) -> Option<&StackFrame> {
    for frames in frames_per_pc {
        if frames.is_empty() || frames.iter().all(|f| f.file.is_empty()) {
            return None;
        }
        if let Some(f) = frames.iter().find(|f| !is_wrapper(&f.function)) {
            return Some(f);
        }
    }
    None
}

/// Where `site`'s channel was made, symbolized with the binary's pclntab.
pub fn made_at(ctx: &Context<'_>, site: &ChanSite) -> Option<MadeAt> {
    let frames: Vec<Vec<StackFrame>> = [site.pc0, site.pc1, site.pc2]
        .iter()
        .take_while(|&&pc| pc != 0)
        .map(|&pc| symbolize_stack(ctx.bin, ctx.bias, &[pc], Innermost::ReturnAddress))
        .collect();
    maker(&frames).map(|f| MadeAt {
        function: Text::from(f.function.as_str()),
        location: Text::from(format!("{}:{}", f.file, f.line)),
        source: "uprobe",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: &str, line: u32, inlined: bool) -> StackFrame {
        StackFrame {
            function: function.to_string(),
            file: "/src/x.go".to_string(),
            line,
            inlined,
            wrapper: false,
            pc: None,
        }
    }

    #[test]
    fn a_direct_make_is_its_own_site() {
        let f = [
            vec![frame("main.main", 10, false)],
            vec![frame("runtime.main", 1, false)],
        ];
        assert_eq!(maker(&f).unwrap().line, 10);
    }

    #[test]
    fn an_inlined_helper_is_the_site() {
        // `newQueue()` inlined into main.main: the innermost frame is the helper's make line.
        let f = [vec![
            frame("main.newQueue", 42, true),
            frame("main.main", 7, false),
        ]];
        let m = maker(&f).unwrap();
        assert_eq!((m.function.as_str(), m.line), ("main.newQueue", 42));
    }

    #[test]
    fn wrappers_are_skipped() {
        // makechan64 → the user's frame one return address up.
        let f = [
            vec![frame("runtime.makechan64", 3, false)],
            vec![frame("main.big", 20, false)],
        ];
        assert_eq!(maker(&f).unwrap().function, "main.big");
        // reflect.MakeChan → reflect.makechan → makechan: two frames up.
        let f = [
            vec![frame("reflect.makechan", 1, false)],
            vec![frame("reflect.MakeChan", 2, false)],
            vec![frame("main.dynamic", 30, false)],
        ];
        assert_eq!(maker(&f).unwrap().line, 30);
        // reflect.MakeChan inlined into the user's function.
        let f = [
            vec![frame("reflect.makechan", 1, false)],
            vec![
                frame("reflect.MakeChan", 2, true),
                frame("main.dyn", 31, false),
            ],
        ];
        assert_eq!(maker(&f).unwrap().line, 31);
    }

    #[test]
    fn unknown_addresses_give_no_site() {
        assert!(maker(&[]).is_none());
        assert!(maker(&[vec![]]).is_none());
        // Only wrappers, then an address outside the binary's code.
        let f = [vec![frame("runtime.makechan64", 3, false)], vec![]];
        assert!(maker(&f).is_none());
        // Only wrappers: nothing above them was read.
        let f = [vec![frame("reflect.makechan", 1, false)]];
        assert!(maker(&f).is_none());
    }
}
