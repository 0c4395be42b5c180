"""History import: CRM customers -> `customers`, historical orders -> bronze `events` as Order Completed."""
