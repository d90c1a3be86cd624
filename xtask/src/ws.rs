//! WebSocket checks (`ws-check`): token, connect, expected events, many users without cross-talk.

use crate::Ctx;

impl crate::flags::WsCheck {
    pub async fn run(self, _ctx: &Ctx) -> anyhow::Result<()> {
        anyhow::bail!("`ws-check` is not implemented yet")
    }
}
