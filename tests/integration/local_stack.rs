//! The local stack itself: template.yaml's queues exist on the emulator with their redrive
//! policy, and the dev server's SQS poller hands messages to the usage matcher, honouring its
//! partial batch answer (a malformed message is reported failed, so it is not deleted and comes
//! back, until the redrive policy moves it to the dead-letter queue).

use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;

async fn sqs() -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&billing_aws::aws_config().await)
}

#[tokio::test]
async fn the_usage_queue_has_its_dead_letter_queue() {
    let _ = integration_tests::TestApp::spawn().await;
    let client = sqs().await;
    let url = std::env::var("USAGE_QUEUE_URL").expect("USAGE_QUEUE_URL from template.yaml");
    let attrs = client
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .expect("the usage queue exists")
        .attributes
        .unwrap_or_default();
    let redrive = attrs
        .get(&QueueAttributeName::RedrivePolicy)
        .expect("a redrive policy");
    assert!(redrive.contains("UsageDeadLetterQueue"), "{redrive}");
    assert!(
        redrive.contains("\"maxReceiveCount\": 20") || redrive.contains("\"maxReceiveCount\":20"),
        "{redrive}"
    );
    assert_eq!(
        attrs
            .get(&QueueAttributeName::FifoQueue)
            .map(String::as_str),
        Some("true"),
        "usage travels a FIFO queue (lanes are its message groups)"
    );
}

#[tokio::test]
async fn a_malformed_message_is_not_deleted_but_redelivered() {
    let _ = integration_tests::TestApp::spawn().await;
    let client = sqs().await;
    // A private queue, so no other test's poller or messages interfere.
    let name = format!("poller-{}", uuid::Uuid::new_v4().simple());
    let url = client
        .create_queue()
        .queue_name(&name)
        .attributes(QueueAttributeName::VisibilityTimeout, "1")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    client
        .send_message()
        .queue_url(&url)
        .message_body(r#"{"events": []}"#)
        .send()
        .await
        .unwrap();
    let arn = "arn:aws:sqs:us-east-1:123456789012:poller";
    let matcher = integration_tests::startup().await.matcher();
    let received = dev_server::sqs::poll_once(&client, &url, arn, &matcher)
        .await
        .unwrap();
    assert_eq!(received, 1);
    // Not deleted: after the visibility timeout the same message is delivered again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let again = client
        .receive_message()
        .queue_url(&url)
        .wait_time_seconds(2)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    assert_eq!(again.len(), 1, "the malformed message comes back");
    client.delete_queue().queue_url(&url).send().await.unwrap();
}
