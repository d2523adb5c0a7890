//! What a snapshot becomes: the report model every view renders (table, live view, JSON), the
//! Prometheus metrics page, the sampled frames with their senders, and pcap files of them.

pub mod metrics;
pub mod pcap;
pub mod report;
pub mod samples;
pub mod senders;
