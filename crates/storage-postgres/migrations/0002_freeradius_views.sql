-- Read-only views with the column names of FreeRADIUS 3.2's PostgreSQL schema
-- (raddb/mods-config/sql/main/postgresql/schema.sql), so reports and scripts written
-- for rlm_sql keep working. The FROM list is a subquery, which makes the views not
-- automatically updatable: an INSERT, UPDATE or DELETE through them is refused.
-- radpostauth has no pass column: no password is stored.
CREATE VIEW radacct AS
SELECT s.id AS radacctid,
       COALESCE(s.session_id, '') AS acctsessionid,
       s.session_key AS acctuniqueid,
       COALESCE(s.user_raw, s.user_name) AS username,
       NULL::text AS realm,
       s.nas_ip::inet AS nasipaddress,
       s.details ->> 'nas_port_id' AS nasportid,
       s.details ->> 'nas_port_type' AS nasporttype,
       to_timestamp(s.started_at) AS acctstarttime,
       to_timestamp(s.updated_at) AS acctupdatetime,
       to_timestamp(s.stopped_at) AS acctstoptime,
       s.interim_gap AS acctinterval,
       s.session_time AS acctsessiontime,
       NULL::text AS acctauthentic,
       NULL::text AS connectinfo_start,
       NULL::text AS connectinfo_stop,
       s.input_octets AS acctinputoctets,
       s.output_octets AS acctoutputoctets,
       s.details ->> 'called_station_id' AS calledstationid,
       COALESCE(s.details ->> 'calling_station_id', s.client_ip) AS callingstationid,
       s.terminate_cause AS acctterminatecause,
       NULL::text AS servicetype,
       NULL::text AS framedprotocol,
       s.framed_ip::inet AS framedipaddress,
       s.framed_ipv6 AS framedipv6address,
       NULL::text AS framedipv6prefix,
       NULL::text AS framedinterfaceid,
       NULL::text AS delegatedipv6prefix,
       NULL::text AS class
FROM (SELECT * FROM sessions) AS s;

CREATE VIEW radpostauth AS
SELECT e.id,
       COALESCE(e.event ->> 'user_raw', e.user_name) AS username,
       CASE e.event ->> 'decision'
           WHEN 'accept' THEN 'Access-Accept'
           WHEN 'reject' THEN 'Access-Reject'
           WHEN 'challenge' THEN 'Access-Challenge'
       END AS reply,
       NULL::text AS calledstationid,
       e.event ->> 'calling_station_id' AS callingstationid,
       to_timestamp(e.time_ms / 1000.0) AS authdate,
       NULL::text AS class
FROM (SELECT * FROM auth_events) AS e;
