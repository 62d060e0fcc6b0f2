//! LCW: the client and its resilience rules, what LCW may send (hostile answers, fuzzed bodies),
//! the framing of what we send, and hedged requests.
//! One module per subject; see `tests/README.md`.

mod support;

#[path = "lcw/fuzz.rs"]
mod fuzz;
#[path = "lcw/hedging.rs"]
mod hedging;
#[path = "lcw/hedging_bounds.rs"]
mod hedging_bounds;
#[path = "lcw/hostile_input.rs"]
mod hostile_input;
#[path = "lcw/http_framing.rs"]
mod http_framing;
#[path = "lcw/resilience.rs"]
mod resilience;
