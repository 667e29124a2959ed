"""A realistic sample app database: the pagila schema with generated rows.

Used by the tests and the local rehearsal to prove that a backup and a restore keep a real schema
intact: custom types and domains, PL/pgSQL functions and triggers, a range-partitioned table, views, a
materialized view, full-text search columns, sequences and foreign keys.

The schema file is pagila's, unchanged (PostgreSQL licence, beside it). Two adaptations are made when
loading, both because the database here is a stock PostgreSQL without pgvector:
- the `vector` extension and its HNSW index are not created, and `film_embedding.embedding` becomes
  `real[]`;
- on a Heroku-like database, `citext` is installed into the `heroku_ext` schema the way Heroku installs
  extensions, so dumps carry what a real Heroku dump carries.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Final

import psycopg

SCHEMA_FILE: Final = "pagila-schema.sql"


def pagila_schema_sql(server_major: int = 18) -> str:
    """The pagila schema, adapted to a PostgreSQL without pgvector (and, before 18, to older servers)."""
    sql = resources.files(__package__).joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    sql = re.sub(r"^CREATE EXTENSION IF NOT EXISTS vector .*$", "", sql, flags=re.MULTILINE)
    sql = re.sub(r"^COMMENT ON EXTENSION vector .*$", "", sql, flags=re.MULTILINE)
    sql = re.sub(r"^CREATE INDEX \S+ ON public.film_embedding USING hnsw .*$", "", sql, flags=re.MULTILINE)
    sql = sql.replace("public.vector(20)", "real[]")
    if server_major < 18:
        # uuidv7() and virtual generated columns are new in PostgreSQL 18.
        sql = sql.replace("uuidv7()", "gen_random_uuid()").replace(") VIRTUAL", ") STORED")
        sql = re.sub(r"^SET transaction_timeout = 0;$", "", sql, flags=re.MULTILINE)
    return sql


# Rows scale with `rentals`; every other table is sized from it the way a rental shop would be.
GENERATE_ROWS: Final = """
SET search_path = public, heroku_ext;
INSERT INTO language (name)
  SELECT unnest(ARRAY['English', 'Italian', 'Japanese', 'Mandarin', 'French', 'German']);
INSERT INTO country (country) SELECT 'Country ' || g FROM generate_series(1, 100) g;
INSERT INTO city (city, country_id) SELECT 'City ' || g, 1 + g % 100 FROM generate_series(1, 600) g;
INSERT INTO address (address, district, city_id, postal_code, phone)
  SELECT g || ' Main Street', 'District ' || (g % 50), 1 + g % 600, lpad(g::text, 5, '0'), '555-' || g
  FROM generate_series(1, {customers} + 4) g;
INSERT INTO category (name) SELECT 'Category ' || g FROM generate_series(1, 16) g;
INSERT INTO actor (first_name, last_name) SELECT 'First' || g, 'Last' || g FROM generate_series(1, 200) g;
INSERT INTO film (title, description, release_year, language_id, length, rating, special_features)
  SELECT 'Film ' || g, 'A story about film ' || g || ' and its many sequels', 1990 + g % 35,
         1 + g % 6, 60 + g % 120, (ARRAY['G','PG','PG-13','R','NC-17'])[1 + g % 5]::mpaa_rating,
         ARRAY['Trailers', 'Deleted Scenes']
  FROM generate_series(1, {films}) g;
INSERT INTO film_actor (actor_id, film_id)
  SELECT 1 + (f * 7 + k) % 200, f FROM generate_series(1, {films}) f, generate_series(0, 4) k;
INSERT INTO film_category (film_id, category_id) SELECT f, 1 + f % 16 FROM generate_series(1, {films}) f;
INSERT INTO film_embedding (film_id, embedding)
  SELECT f, ARRAY(SELECT ((f * 31 + d) % 97) / 97.0 FROM generate_series(1, 20) d)::real[]
  FROM generate_series(1, {films}) f;
INSERT INTO store (manager_staff_id, address_id) VALUES (1, 1), (2, 2);
INSERT INTO staff (first_name, last_name, address_id, email, store_id, username)
  VALUES ('Mike', 'Hillyer', 3, 'mike@example.com', 1, 'mike'),
         ('Jon', 'Stephens', 4, 'jon@example.com', 2, 'jon');
INSERT INTO customer (store_id, first_name, last_name, email, address_id, active)
  SELECT 1 + g % 2, 'Customer' || g, 'Surname' || g, 'customer' || g || '@example.com', 4 + g, 1
  FROM generate_series(1, {customers}) g;
INSERT INTO inventory (film_id, store_id)
  SELECT 1 + g % {films}, 1 + g % 2 FROM generate_series(1, {inventory}) g;
INSERT INTO rental (rental_date, inventory_id, customer_id, return_date, staff_id)
  SELECT timestamptz '2022-01-01' + (g::bigint * {step_seconds}) * interval '1 second',
         1 + g % {inventory}, 1 + g % {customers},
         timestamptz '2022-01-03' + (g::bigint * {step_seconds}) * interval '1 second', 1 + g % 2
  FROM generate_series(1, {rentals}) g;
INSERT INTO payment (customer_id, staff_id, rental_id, amount, payment_date)
  SELECT customer_id, staff_id, rental_id, 0.99 + (rental_id % 10), rental_date
  FROM rental;
REFRESH MATERIALIZED VIEW rental_by_category;
"""


def load_pagila(conninfo: str, rentals: int = 2000, heroku_like: bool = True, server_major: int = 18) -> None:
    """Create the pagila schema in an empty database and fill it; `rentals` sets the scale."""
    scale = {
        "rentals": rentals,
        "customers": max(10, rentals // 20),
        "films": max(20, min(1000, rentals // 10)),
        "inventory": max(40, rentals // 5),
        # Spread rentals (and their payments) over the 1,600 days the payment partitions cover.
        "step_seconds": max(1, 1600 * 86400 // max(rentals, 1)),
    }
    with psycopg.connect(conninfo, autocommit=True) as conn:
        if heroku_like:
            # Heroku installs extensions into heroku_ext, and keeps its own machinery in _heroku.
            conn.execute("CREATE SCHEMA heroku_ext")
            conn.execute("CREATE EXTENSION citext WITH SCHEMA heroku_ext")
            conn.execute("CREATE SCHEMA _heroku")
            conn.execute("CREATE TABLE _heroku.internal_state (id int PRIMARY KEY)")
            conn.execute("INSERT INTO _heroku.internal_state VALUES (1)")
        conn.execute(pagila_schema_sql(server_major).encode())  # many statements: simple query protocol
        if heroku_like:
            conn.execute("ALTER TABLE public.customer ADD COLUMN nickname heroku_ext.citext")
        with conn.transaction():
            conn.execute(GENERATE_ROWS.format(**scale).encode())
