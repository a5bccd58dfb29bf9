CREATE EXTENSION IF NOT EXISTS pg_trickle;
CREATE TABLE orders (id bigint PRIMARY KEY, region text NOT NULL, amount numeric NOT NULL);
INSERT INTO orders VALUES (1, 'north', 10), (2, 'south', 20), (3, 'north', 5);
