//! Any bytes: the MQ first-segment parser never panics, and a channel it reads is a valid
//! channel name; any SNI decodes to a channel that encodes back to it.
#![no_main]

use causeway_protocols::mq;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(initial) = mq::initial_data(data) {
        assert!(!initial.channel.is_empty() && initial.channel.len() <= mq::MAX_CHANNEL);
        assert!(initial.channel.chars().all(mq::name_char));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let sni = format!("{text}{}", mq::SNI_SUFFIX);
        if let Some(Ok(channel)) = mq::channel_from_sni(&sni) {
            assert_eq!(mq::channel_to_sni(&channel), sni.to_ascii_lowercase());
        }
    }
});
