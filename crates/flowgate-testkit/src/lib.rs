//! Contract checkers for flowgate, public so that users can run them on their own setup.
//!
//! Each checker takes a recorded history (what was published or appended, what each
//! subscriber saw and when) and reports every way it breaks the contract in
//! `DESIGN.md`. A checker that cannot fail is worthless, so each rule has a test that feeds it
//! a hand-made broken history and watches it report the break.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![doc(test(attr(deny(warnings))))]

pub mod store;
