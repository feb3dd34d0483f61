//! Meters (with their unique codes) and plans.

use async_trait::async_trait;

use super::{Claim, DynamoStore, Item, entity_item, from_item, keys};
use billing::error::{Error, Result};
use billing::ids::{MeterId, PlanId};
use billing::meter::{Meter, MeterCode};
use billing::pagination::{Page, PageRequest};
use billing::plan::Plan;
use billing::ports::CatalogStore;

fn code_claim(code: &MeterCode) -> Claim {
    Claim::new(
        keys::meter_code_claim(code.as_str()),
        "meter_code_taken",
        "code",
        "meter code",
    )
}

fn meter_item(meter: &Meter) -> Result<Item> {
    entity_item(
        meter,
        &keys::meter(&meter.id),
        Some(("METER", meter.id.as_str())),
    )
}

fn plan_item(plan: &Plan) -> Result<Item> {
    entity_item(
        plan,
        &keys::plan(&plan.id),
        Some(("PLAN", plan.id.as_str())),
    )
}

#[async_trait]
impl CatalogStore for DynamoStore {
    async fn insert_meter(&self, meter: &Meter) -> Result<()> {
        let claim = code_claim(&meter.code);
        let items = vec![
            self.put(
                meter_item(meter)?,
                Some(("attribute_not_exists(pk)", Item::new())),
            ),
            self.put(
                claim.item(meter.id.as_str()),
                Some(("attribute_not_exists(pk)", Item::new())),
            ),
        ];
        match self.transact(items).await? {
            Ok(()) => Ok(()),
            Err(reasons) => Err(self.claim_conflict(&[(1, claim)], &reasons).await?),
        }
    }

    async fn get_meter(&self, id: &MeterId) -> Result<Option<Meter>> {
        self.get_item(&keys::meter(id))
            .await?
            .map(from_item)
            .transpose()
    }

    async fn get_meter_by_code(&self, code: &MeterCode) -> Result<Option<Meter>> {
        let Some(holder) = self.claim_owner(&code_claim(code)).await? else {
            return Ok(None);
        };
        self.get_meter(&MeterId::parse(&holder)?).await
    }

    async fn list_meters(&self, page: &PageRequest) -> Result<Page<Meter>> {
        self.list_kind("METER", page, MeterId::parse, |m: &Meter| {
            m.id.as_str().to_owned()
        })
        .await
    }

    async fn put_meter(&self, meter: &Meter) -> Result<()> {
        if self
            .put_item(meter_item(meter)?, Some("attribute_exists(pk)"))
            .await?
        {
            Ok(())
        } else {
            Err(Error::not_found("meter", meter.id.as_str()))
        }
    }

    async fn insert_plan(&self, plan: &Plan) -> Result<()> {
        if self
            .put_item(plan_item(plan)?, Some("attribute_not_exists(pk)"))
            .await?
        {
            Ok(())
        } else {
            Err(Error::internal(format!("plan id {} collided", plan.id)))
        }
    }

    async fn get_plan(&self, id: &PlanId) -> Result<Option<Plan>> {
        self.get_item(&keys::plan(id))
            .await?
            .map(from_item)
            .transpose()
    }

    async fn list_plans(&self, page: &PageRequest) -> Result<Page<Plan>> {
        self.list_kind("PLAN", page, PlanId::parse, |p: &Plan| {
            p.id.as_str().to_owned()
        })
        .await
    }
}
