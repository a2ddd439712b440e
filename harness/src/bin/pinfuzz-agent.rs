//! The guest agent: `/init` of the pinfuzz guest.
fn main() {}
