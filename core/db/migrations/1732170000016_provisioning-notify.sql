-- Up Migration

-- Every change to a user's provisioning state (accounts, applied entitlements, the workflow's
-- progress) is announced on the channel `user_provisioning` with the user's id, so the first-login
-- status page of any gateway instance updates at once (LISTEN; see core/logins/watcher.ts). NOTIFY
-- is sent at commit and identical payloads of one transaction are sent once.
CREATE FUNCTION notify_user_provisioning() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('user_provisioning', NEW.user_id::text);
  RETURN NULL;
END
$$;
CREATE TRIGGER accounts_notify AFTER INSERT OR UPDATE ON accounts FOR EACH ROW EXECUTE FUNCTION notify_user_provisioning();
CREATE TRIGGER account_grants_notify AFTER INSERT OR UPDATE ON account_grants FOR EACH ROW EXECUTE FUNCTION notify_user_provisioning();
CREATE TRIGGER user_sync_state_notify AFTER INSERT OR UPDATE ON user_sync_state FOR EACH ROW EXECUTE FUNCTION notify_user_provisioning();

-- Down Migration
DROP TRIGGER user_sync_state_notify ON user_sync_state;
DROP TRIGGER account_grants_notify ON account_grants;
DROP TRIGGER accounts_notify ON accounts;
DROP FUNCTION notify_user_provisioning();
