//! The explicit escape hatch: making the history match the files.

use tokio_postgres::Client;

use super::{Checksum, Event, Migrator, history, plan};
use crate::{Error, ErrorKind};
use pgsteady::Connector;

impl Migrator {
    /// [`Migrator::repair_on`] on a session from `connector` (waiting for the database).
    pub async fn repair(&self, connector: &Connector, dry_run: bool) -> Result<Repair, Error> {
        let mut connected = connector.connect().await?;
        self.repair_on(&mut connected.client, dry_run).await
    }

    /// Makes the history match the files, under the lock and in one transaction, without
    /// running any SQL from the files: changed (or renamed) applied files get their new
    /// checksum and name recorded; applied versions with no file any more are forgotten
    /// (their rows deleted). With `dry_run`, only reports what it would change.
    ///
    /// This is the explicit escape hatch for a deliberate edit of an applied file (a comment,
    /// a fix already made by hand) or a deliberate removal; review the report.
    pub async fn repair_on(&self, client: &mut Client, dry_run: bool) -> Result<Repair, Error> {
        let key = self
            .own(
                "lock key query",
                history::session_lock_key(client, &self.table),
            )
            .await?;
        history::lock(client, key, self.lock_timeout, |holder_pid| {
            self.emit(Event::LockWait { holder_pid })
        })
        .await?;
        let result = self.repair_locked(client, dry_run).await;
        history::unlock(client, key).await;
        result
    }

    async fn repair_locked(&self, client: &mut Client, dry_run: bool) -> Result<Repair, Error> {
        if !self
            .own("history check", history::exists(client, &self.table))
            .await?
        {
            return Ok(Repair::default());
        }
        let rows = self
            .own("history read", history::read(client, &self.table))
            .await?;
        let plan = plan::repair_plan(&self.migrations, &rows);
        let repair = Repair {
            rewritten: plan
                .rewrite
                .iter()
                .map(|m| {
                    let old = rows.iter().find(|r| r.version == m.version());
                    Rewritten {
                        version: m.version(),
                        file: m.display_path(),
                        old_name: old.map(|r| r.name.clone()).unwrap_or_default(),
                        old_checksum: old.map(|r| r.checksum.clone()).unwrap_or_default(),
                        new_checksum: m.checksum(),
                    }
                })
                .collect(),
            forgotten: plan.forget.clone(),
            dry_run,
        };
        if dry_run || (plan.rewrite.is_empty() && plan.forget.is_empty()) {
            return Ok(repair);
        }
        let pg = |e| Error::from_pg(e, "repairing the migration history");
        let tx = client.transaction().await.map_err(pg)?;
        let t = self.table.sql();
        for m in &plan.rewrite {
            tx.execute(
                &format!("UPDATE {t} SET checksum = $2, name = $3 WHERE version = $1"),
                &[&m.version(), &m.checksum().to_string(), &m.name()],
            )
            .await
            .map_err(pg)?;
        }
        for (version, _) in &plan.forget {
            tx.execute(&format!("DELETE FROM {t} WHERE version = $1"), &[version])
                .await
                .map_err(pg)?;
        }
        tx.commit().await.map_err(|e| {
            let err = Error::from_pg(e, "committing the repaired migration history");
            match err.reason() {
                Some(r) if r.is_connection_lost() => err.with_kind(ErrorKind::CommitOutcomeUnknown),
                _ => err,
            }
        })?;
        Ok(repair)
    }
}

/// What [`Migrator::repair_on`] changed (or would change, with `dry_run`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Repair {
    /// Applied versions whose checksum and name were rewritten to match the file.
    pub rewritten: Vec<Rewritten>,
    /// Applied versions with no file any more, whose history rows were deleted: `(version,
    /// name)`.
    pub forgotten: Vec<(i64, String)>,
    /// Whether nothing was written.
    pub dry_run: bool,
}

impl Repair {
    /// Whether there was nothing to repair.
    pub fn is_empty(&self) -> bool {
        self.rewritten.is_empty() && self.forgotten.is_empty()
    }
}

/// One history row rewritten by a repair.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rewritten {
    /// The version.
    pub version: i64,
    /// The file now.
    pub file: String,
    /// The name recorded before.
    pub old_name: String,
    /// The checksum recorded before (hex).
    pub old_checksum: String,
    /// The file's checksum, now recorded.
    pub new_checksum: Checksum,
}
