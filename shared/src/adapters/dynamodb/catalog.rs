//! Meters (with their unique codes) and plans.

use async_trait::async_trait;

use super::{Claim, DynamoStore, Item, from_item, s, to_item};
use crate::error::{Error, Result};
use crate::ids::{MeterId, PlanId};
use crate::meter::{Meter, MeterCode};
use crate::pagination::{Cursor, Page, PageRequest};
use crate::plan::Plan;
use crate::store::CatalogStore;

fn code_claim(code: &MeterCode) -> Claim {
    Claim::new(
        "METER_CODE",
        code.as_str(),
        "meter_code_taken",
        "code",
        "meter code",
    )
}

fn meter_pk(id: &MeterId) -> String {
    format!("METER#{id}")
}

fn plan_pk(id: &PlanId) -> String {
    format!("PLAN#{id}")
}

/// An entity item listed in `gsi1` under `kind`, in id (creation) order.
fn listed_item<T: serde::Serialize>(value: &T, pk: String, kind: &str, id: &str) -> Result<Item> {
    let mut item = to_item(value)?;
    item.insert("pk".into(), s(pk));
    item.insert("sk".into(), s(kind));
    item.insert("gsi1pk".into(), s(kind));
    item.insert("gsi1sk".into(), s(id));
    Ok(item)
}

#[async_trait]
impl CatalogStore for DynamoStore {
    async fn insert_meter(&self, meter: &Meter) -> Result<()> {
        let claim = code_claim(&meter.code);
        let items = vec![
            self.put(
                listed_item(meter, meter_pk(&meter.id), "METER", meter.id.as_str())?,
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
        self.get_item(meter_pk(id), "METER")
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
        let after = page
            .after
            .as_ref()
            .map(|c| MeterId::parse(c.sort_key()).map_err(|_| Cursor::invalid()))
            .transpose()?;
        let items: Vec<Meter> = self
            .query_index(
                "gsi1",
                "METER",
                None,
                after.as_ref().map(MeterId::as_str),
                page.limit,
                &[],
            )
            .await?;
        Ok(Page::from_overfetch(items, page.limit, |m| {
            m.id.as_str().to_owned()
        }))
    }

    async fn put_meter(&self, meter: &Meter) -> Result<()> {
        let item = listed_item(meter, meter_pk(&meter.id), "METER", meter.id.as_str())?;
        if self.put_item(item, Some("attribute_exists(pk)")).await? {
            Ok(())
        } else {
            Err(Error::not_found("meter", meter.id.as_str()))
        }
    }

    async fn insert_plan(&self, plan: &Plan) -> Result<()> {
        let item = listed_item(plan, plan_pk(&plan.id), "PLAN", plan.id.as_str())?;
        if self
            .put_item(item, Some("attribute_not_exists(pk)"))
            .await?
        {
            Ok(())
        } else {
            Err(Error::internal(format!("plan id {} collided", plan.id)))
        }
    }

    async fn get_plan(&self, id: &PlanId) -> Result<Option<Plan>> {
        self.get_item(plan_pk(id), "PLAN")
            .await?
            .map(from_item)
            .transpose()
    }

    async fn list_plans(&self, page: &PageRequest) -> Result<Page<Plan>> {
        let after = page
            .after
            .as_ref()
            .map(|c| PlanId::parse(c.sort_key()).map_err(|_| Cursor::invalid()))
            .transpose()?;
        let items: Vec<Plan> = self
            .query_index(
                "gsi1",
                "PLAN",
                None,
                after.as_ref().map(PlanId::as_str),
                page.limit,
                &[],
            )
            .await?;
        Ok(Page::from_overfetch(items, page.limit, |p| {
            p.id.as_str().to_owned()
        }))
    }
}
