-- Orders from every drop (CSV and NDJSON land in the same bronze table).
-- Values are still text here; [[silver]] `columns` casts them after this query.
SELECT
    order_id,
    customer_id,
    product_id,
    quantity,
    amount,
    order_date,
    updated_at,
    lower(trim(status)) AS status
FROM bronze.orders
