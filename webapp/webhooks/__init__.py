"""Webhooks: deliveries recorded in the transaction of the change that causes them (`outbox`),
where they may go (`targets`), and what they carry (`bodies`). The worker side sends them."""
