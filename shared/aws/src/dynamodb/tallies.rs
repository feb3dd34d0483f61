//! The matcher's day tallies ([`billing::tally`]) in the usage table: one small item per day
//! and lane (`TALLY#<day>` / `LANE#<nn>`, about 120 bytes, 1 WCU a put), written once per batch
//! on condition of the version read, and kept 400 days.

use std::collections::HashMap;

use chrono::{Duration, NaiveDate};
use futures_util::stream::{self, StreamExt, TryStreamExt};

use super::usage::{condition_failed, lane_of, on_version};
use super::{DynamoStore, Item, keys, n, number_attr, s, sdk_error, string_attr};
use billing::error::{Error, Result};
use billing::ports::LaneWrite;
use billing::tally::{DayCount, DayTally, TallyKey};
use billing::usage::MessageNonce;

/// How long a day's tallies are kept.
const TALLY_RETENTION_DAYS: i64 = 400;

fn tally_item(tally: &DayTally) -> Item {
    let key = keys::day_tally(tally.key.day, tally.key.lane);
    let expires = (tally.key.day + Duration::days(TALLY_RETENTION_DAYS))
        .and_hms_opt(0, 0, 0)
        .map_or(0, |t| t.and_utc().timestamp());
    let mut item: Item = HashMap::from([
        ("pk".to_owned(), s(&key.pk)),
        ("sk".to_owned(), s(&key.sk)),
        ("version".to_owned(), n(tally.version)),
        ("events".to_owned(), n(tally.count.events)),
        ("unbillable".to_owned(), n(tally.count.unbillable)),
        ("expiresAt".to_owned(), n(expires.max(0) as u64)),
    ]);
    if let Some(last) = &tally.last {
        item.insert("last".into(), s(last.as_str()));
    }
    item
}

fn count_of(item: &Item) -> DayCount {
    DayCount {
        events: number_attr(item, "events").unwrap_or(0),
        unbillable: number_attr(item, "unbillable").unwrap_or(0),
    }
}

fn tally_from_item(day: NaiveDate, item: &Item) -> Result<DayTally> {
    Ok(DayTally {
        key: TallyKey {
            day,
            lane: lane_of(item)?,
        },
        version: super::version_of(item),
        last: string_attr(item, "last")
            .map(MessageNonce::parse)
            .transpose()?,
        count: count_of(item),
    })
}

impl DynamoStore {
    /// [`billing::ports::UsageStore::tallies`].
    pub(super) async fn read_tallies(
        &self,
        wanted: &[TallyKey],
    ) -> Result<HashMap<TallyKey, DayTally>> {
        let by_pk: HashMap<String, NaiveDate> = wanted
            .iter()
            .map(|k| (keys::day_tallies(k.day), k.day))
            .collect();
        let keys = wanted
            .iter()
            .map(|k| keys::day_tally(k.day, k.lane))
            .collect();
        let mut tallies = HashMap::with_capacity(wanted.len());
        for item in self.batch_get(&self.usage_table, keys, None).await? {
            let pk = string_attr(&item, "pk").unwrap_or_default();
            let day = by_pk
                .get(&pk)
                .ok_or_else(|| Error::internal(format!("an unasked tally of {pk}")))?;
            let tally = tally_from_item(*day, &item)?;
            tallies.insert(tally.key, tally);
        }
        Ok(tallies)
    }

    /// [`billing::ports::UsageStore::write_tallies`].
    pub(super) async fn put_tallies(
        &self,
        writes: &[(DayTally, DayTally)],
    ) -> Result<Vec<LaneWrite>> {
        let puts: Vec<_> = writes.iter().map(|(p, n)| self.put_tally(p, n)).collect();
        stream::iter(puts).buffered(4).try_collect().await
    }

    async fn put_tally(&self, previous: &DayTally, next: &DayTally) -> Result<LaneWrite> {
        let request = self
            .client
            .put_item()
            .table_name(&self.usage_table)
            .set_item(Some(tally_item(next)));
        let result = on_version(request, previous.version, "").send().await;
        self.count_writes(1);
        match result {
            Ok(_) => Ok(LaneWrite::Done),
            Err(e) if e.as_service_error().is_some_and(condition_failed) => Ok(LaneWrite::Conflict),
            Err(e) => Err(sdk_error(e)),
        }
    }

    /// [`billing::ports::UsageStore::day_count`]: one query of the day's partition.
    pub(super) async fn count_day(&self, day: NaiveDate) -> Result<DayCount> {
        let lanes = usize::from(billing::usage::LANES);
        let items = self
            .query_in(
                &self.usage_table,
                None,
                &keys::day_tallies(day),
                None,
                None,
                lanes,
                &[],
            )
            .await?;
        let mut count = DayCount::default();
        for item in &items {
            count.add(count_of(item));
        }
        Ok(count)
    }
}
