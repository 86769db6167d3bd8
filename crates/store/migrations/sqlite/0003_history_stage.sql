-- allowgate schema, version 3: where in the mail flow each history record was decided.
-- `rcpt`: by the Postfix policy server, for one recipient (a rejection or deferral there ends
-- that recipient's delivery before the message is sent); `message`: by the milter, for the
-- whole message. Records written before this version were the milter's.
ALTER TABLE history ADD COLUMN stage TEXT NOT NULL DEFAULT 'message';
