-- The product catalog served by the REST gateway.
SELECT product_id, name, category, price
FROM silver.products
