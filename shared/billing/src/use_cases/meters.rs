//! Meters: create (the code claimed uniquely), read, list, archive.

use crate::error::{Error, Result};
use crate::ids::MeterId;
use crate::meter::{CreateMeter, Meter, MeterStatus};
use crate::pagination::{Page, PageRequest};

use super::Billing;

impl Billing {
    /// Creates a meter; 409 naming the holder when the code is taken.
    pub async fn create_meter(&self, request: CreateMeter) -> Result<Meter> {
        let meter = request.parse(self.clock.now())?;
        self.catalog.insert_meter(&meter).await?;
        Ok(meter)
    }

    /// Reads a meter; 404 when unknown.
    pub async fn meter(&self, id: &str) -> Result<Meter> {
        let id = MeterId::parse(id).map_err(|_| Error::not_found("meter", id))?;
        self.catalog
            .get_meter(&id)
            .await?
            .ok_or_else(|| Error::not_found("meter", id.as_str()))
    }

    /// Lists meters in creation order.
    pub async fn meters(&self, page: &PageRequest) -> Result<Page<Meter>> {
        self.catalog.list_meters(page).await
    }

    /// Archives a meter: it stops matching new events. Archiving twice changes nothing.
    #[tracing::instrument(skip(self), fields(meter = id))]
    pub async fn archive_meter(&self, id: &str) -> Result<Meter> {
        let mut meter = self.meter(id).await?;
        if meter.status == MeterStatus::Archived {
            return Ok(meter);
        }
        meter.status = MeterStatus::Archived;
        meter.updated_at = self.clock.now();
        self.catalog.put_meter(&meter).await?;
        Ok(meter)
    }
}
