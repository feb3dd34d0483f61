//! Step 4: the outbox. Mails are queued with the change they report and sent here, at least
//! once; a mail whose send failed stays queued for the next run.

use crate::error::Result;

use super::{BillingRun, PAGE, RunReport};

impl BillingRun {
    /// Sends the outbox. Without a mailer the tasks stay queued (nothing is dropped).
    pub(super) async fn send_mail(&self, report: &mut RunReport) -> Result<()> {
        let Some(mailer) = &self.mailer else {
            return Ok(());
        };
        loop {
            let tasks = self.ledger.pending_mail(PAGE).await?;
            if tasks.is_empty() {
                return Ok(());
            }
            let mut progressed = false;
            for task in &tasks {
                match crate::mail::compose(
                    task,
                    self.ledger.as_ref(),
                    self.customers.as_ref(),
                    self.links.as_deref(),
                )
                .await
                {
                    Ok(Some(mail)) => match mailer.send(&mail).await {
                        Ok(()) => report.mails_sent += 1,
                        Err(e) => {
                            report.errors.push(format!("mail {}: {e}", task.invoice_id));
                            continue;
                        }
                    },
                    Ok(None) => {}
                    Err(e) => {
                        report.errors.push(format!("mail {}: {e}", task.invoice_id));
                        continue;
                    }
                }
                self.ledger.mail_sent(task).await?;
                progressed = true;
            }
            if !progressed {
                return Ok(()); // every one failed: leave them for the next run
            }
        }
    }
}
