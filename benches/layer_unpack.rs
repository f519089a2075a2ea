//! Layer unpack throughput (placeholder until the bench lands in this commit series).
fn main() {}
