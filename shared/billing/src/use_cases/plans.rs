//! Plans: create (resolving the meters their prices name), read, list. Plans never change.

use crate::error::{Error, Result};
use crate::ids::PlanId;
use crate::meter::Meter;
use crate::pagination::{Page, PageRequest};
use crate::plan::{CreatePlan, MeterRef, Plan};

use super::Billing;

impl Billing {
    /// Creates a plan after resolving the meters its prices name.
    pub async fn create_plan(&self, request: CreatePlan) -> Result<Plan> {
        let mut meters: Vec<Meter> = Vec::new();
        for reference in request.meter_refs()? {
            let found = match &reference {
                MeterRef::Id(id) => self.catalog.get_meter(id).await?,
                MeterRef::Code(code) => self.catalog.get_meter_by_code(code).await?,
            };
            meters.extend(found);
        }
        let plan = request.parse(self.clock.now(), &meters)?;
        self.catalog.insert_plan(&plan).await?;
        Ok(plan)
    }

    /// Reads a plan; 404 when unknown.
    pub async fn plan(&self, id: &str) -> Result<Plan> {
        let id = PlanId::parse(id).map_err(|_| Error::not_found("plan", id))?;
        self.catalog
            .get_plan(&id)
            .await?
            .ok_or_else(|| Error::not_found("plan", id.as_str()))
    }

    /// Lists plans in creation order.
    pub async fn plans(&self, page: &PageRequest) -> Result<Page<Plan>> {
        self.catalog.list_plans(page).await
    }
}
