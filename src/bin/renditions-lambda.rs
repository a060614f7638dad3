//! `renditions-lambda` (`bootstrap` in the deployment zip): wiring only. Logging and X-Ray,
//! then the app from the environment (an init error is reported to the Runtime API and
//! ends the process), then the Lambda runtime loop. The work lives in `renditions::function` and `renditions::handler`.

use lambda_runtime::{LambdaEvent, service_fn};
use renditions::{App, report_init_error};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    renditions::init_logging()?;
    let app = match App::from_env().await {
        Ok(app) => app,
        Err(e) => {
            report_init_error(&e).await;
            return Err(e.into());
        }
    };
    let app = &app;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        app.handle(event)
    }))
    .await
}
