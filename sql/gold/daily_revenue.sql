-- Revenue per day and product category.
SELECT
    o.order_date,
    p.category,
    COUNT(*) AS orders,
    SUM(o.quantity) AS units,
    SUM(o.amount) AS revenue
FROM silver.orders AS o
JOIN silver.products AS p ON o.product_id = p.product_id
GROUP BY o.order_date, p.category
