//! The relay frame decoder on arbitrary bytes (what a hostile or broken peer can send): never
//! panics, never loops, never returns a record outside its frame, and every frame it accepts
//! encodes back to the same bytes.
#![no_main]

use iobp_relay::{DataWriter, Frame, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((frame, used))) = decode(rest) {
        assert!(used >= iobp_relay::FRAME_HEADER_LEN && used <= rest.len());
        let mut again = Vec::new();
        match &frame {
            Frame::Hello { stream, version } => {
                iobp_relay::encode_hello(&mut again, *stream);
                again[5..7].copy_from_slice(&version.to_le_bytes());
            }
            Frame::Resume { position } => iobp_relay::encode_resume(&mut again, *position),
            Frame::Data(d) => {
                let mut w = DataWriter::begin(&mut again, d.prev, d.backlog, d.last_ts_us);
                for (p, payload) in d.records() {
                    w.push(&mut again, p, payload).expect("a decoded record re-encodes");
                }
                w.finish(&mut again);
            }
            Frame::Ack { through } => iobp_relay::encode_ack(&mut again, *through),
            Frame::Busy { position, retry_after_ms, reason } if reason.len() <= 1024 => {
                iobp_relay::encode_busy(&mut again, *position, *retry_after_ms, reason);
            }
            Frame::Ping { nonce } => iobp_relay::encode_ping(&mut again, *nonce),
            Frame::Pong { nonce } => iobp_relay::encode_pong(&mut again, *nonce),
            Frame::Error { message } if message.len() <= 4096 => {
                iobp_relay::encode_error(&mut again, message);
            }
            _ => again.extend_from_slice(&rest[..used]),
        }
        assert_eq!(again, &rest[..used], "{frame:?} re-encodes to the same bytes");
        rest = &rest[used..];
    }
});
