//! The operator's side of the dead-letter policy: a pair's parked messages listed, re-sent
//! into its buffer (delivered after everything already buffered) or discarded. Each change is
//! durable before it is answered (see [`crate::parked`] for the on-disk events and the order
//! of the steps).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use super::{Engine, EngineError, blocking, read};
use crate::parked::{ParkedMessage, list, release_all, resolve_record};
use crate::stats::Side;
use crate::trace::{TraceEvent, TraceKind};

impl Engine {
    fn parked_log(&self, id: &str) -> Result<Option<iobp_log::Log>, EngineError> {
        read(&self.inner.pairs)
            .get(id)
            .map(|e| e.parked.clone())
            .ok_or_else(|| EngineError::NotFound(id.to_string()))
    }

    /// Pair `id`'s parked messages, oldest first (none for a pair without the policy).
    pub async fn parked(&self, id: &str) -> Result<Vec<ParkedMessage>, EngineError> {
        let Some(log) = self.parked_log(id)? else { return Ok(Vec::new()) };
        blocking(move || list(&log))
            .await
            .map_err(|source| EngineError::Buffer { id: id.to_string(), source })
    }

    /// Re-sends parked message `parked_id` of pair `id`: stored again in the pair's buffer
    /// (counted as received, delivered after everything already buffered), then no longer
    /// parked. Returns its new sequence number.
    pub async fn resend_parked(&self, id: &str, parked_id: u64) -> Result<u64, EngineError> {
        let _admin = self.inner.admin.lock().await;
        let (m, log) = self.find_parked(id, parked_id).await?;
        let (main, stats, feed) = {
            let pairs = read(&self.inner.pairs);
            let e = pairs.get(id).ok_or_else(|| EngineError::NotFound(id.to_string()))?;
            (e.log.clone(), e.stats.clone(), e.feed.clone())
        };
        let new_seq = main.append(&m.payload).await.map_err(|e| match e {
            iobp_log::Error::Full { .. } => {
                EngineError::BufferFull { id: id.to_string(), detail: e.to_string() }
            }
            source => EngineError::Buffer { id: id.to_string(), source },
        })?;
        stats.received.fetch_add(1, Relaxed);
        stats.received_bytes.fetch_add(m.payload.len() as u64, Relaxed);
        let origin: Arc<str> = format!("re-send of parked #{}", m.original_seq).into();
        feed.record(
            Side::Source,
            Some(&origin),
            std::iter::once((Some(new_seq), m.payload.as_slice())),
        );
        self.resolve(id, &log, parked_id).await?;
        if let Some(trace) = self.trace_of(id) {
            let mut ev = TraceEvent::new(TraceKind::ParkedResent, m.original_seq, m.original_seq);
            ev.seq = Some(new_seq);
            let mut copy = TraceEvent::new(TraceKind::CopyOf, new_seq, new_seq);
            copy.pair = Some(id.to_string());
            copy.seq = Some(m.original_seq);
            copy.err = Some("re-send of a parked message".into());
            let _ = tokio::task::spawn_blocking(move || {
                trace.record_surely(ev);
                trace.record_surely(copy);
            })
            .await;
        }
        Ok(new_seq)
    }

    /// Discards parked message `parked_id` of pair `id` for good.
    pub async fn discard_parked(&self, id: &str, parked_id: u64) -> Result<(), EngineError> {
        let _admin = self.inner.admin.lock().await;
        let (m, log) = self.find_parked(id, parked_id).await?;
        self.resolve(id, &log, parked_id).await?;
        if let Some(trace) = self.trace_of(id) {
            let ev = TraceEvent::new(TraceKind::ParkedDiscarded, m.original_seq, m.original_seq);
            let _ = tokio::task::spawn_blocking(move || trace.record_surely(ev)).await;
        }
        Ok(())
    }

    async fn find_parked(
        &self,
        id: &str,
        parked_id: u64,
    ) -> Result<(ParkedMessage, iobp_log::Log), EngineError> {
        let not_found = || EngineError::ParkedNotFound { id: id.to_string(), parked: parked_id };
        let log = self.parked_log(id)?.ok_or_else(not_found)?;
        let m =
            self.parked(id).await?.into_iter().find(|m| m.id == parked_id).ok_or_else(not_found)?;
        Ok((m, log))
    }

    /// Marks a parked message resolved (durably); once none is left, the parked log is
    /// released for retention.
    async fn resolve(
        &self,
        id: &str,
        log: &iobp_log::Log,
        parked_id: u64,
    ) -> Result<(), EngineError> {
        let buffer = |source| EngineError::Buffer { id: id.to_string(), source };
        log.append(&resolve_record(parked_id)).await.map_err(buffer)?;
        let l2 = log.clone();
        let left = blocking(move || {
            let left = list(&l2)?.len() as u64;
            if left == 0 {
                release_all(&l2)?;
            }
            Ok::<_, iobp_log::Error>(left)
        })
        .await
        .map_err(buffer)?;
        if let Some(e) = read(&self.inner.pairs).get(id) {
            e.stats.parked.store(left, Relaxed);
        }
        Ok(())
    }
}
