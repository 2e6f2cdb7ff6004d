-- Small tables of the hub's own behind the built-in functions lookupCustomer,
-- bookAppointment and transferCall, so the demo answers from data, not canned text.

CREATE TABLE demo_customers (
    phone TEXT PRIMARY KEY,
    name  TEXT NOT NULL,
    email TEXT,
    notes TEXT
);

CREATE TABLE demo_appointments (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_phone TEXT NOT NULL,
    starts_at      TEXT NOT NULL UNIQUE,
    service        TEXT NOT NULL,
    created_at     INTEGER NOT NULL
);

CREATE TABLE demo_departments (
    name    TEXT PRIMARY KEY,
    number  TEXT,
    sip_uri TEXT
);

INSERT INTO demo_customers (phone, name, email, notes) VALUES
    ('+14155550123', 'Jordan Lee', 'jordan.lee@example.com', 'Prefers afternoons. Due for a cleaning.'),
    ('+14155550144', 'Priya Natarajan', 'priya.n@example.com', 'New patient since 2025.'),
    ('+14155550166', 'Sam Ortega', NULL, 'Asks for reminders by SMS.'),
    ('+16505550111', 'Alex Kim', 'alex.kim@example.com', NULL);

INSERT INTO demo_departments (name, number, sip_uri) VALUES
    ('front-desk', '+14155550177', NULL),
    ('billing', '+14155550188', NULL),
    ('emergencies', NULL, 'sip:oncall@pbx.example.com');
